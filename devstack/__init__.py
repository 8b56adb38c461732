"""The local stack: a real Kafka broker and faithful Salesforce and LogiSense emulators.

Nothing in `shared/` or `services/` imports this package; only `sfls devstack` reaches it, lazily.
"""

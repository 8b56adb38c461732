"""The LogiSense Billing emulator: HTTPS REST API, seeded data set, fault injection, admin API.

Run it with `python -m devstack.logisense --port 8444 --state-dir .devstack`; the admin API under
`/__admin/` is described in `devstack/logisense/admin.py`.
"""

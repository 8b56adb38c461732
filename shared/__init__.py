"""The common library of sfls: settings, the event contract, Kafka, the external clients, observability."""

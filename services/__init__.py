"""The sfls services (listener, syncer, importer) and the `sfls` command that runs them."""

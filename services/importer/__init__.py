"""The sfls importer service."""

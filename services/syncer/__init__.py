"""The sfls syncer service."""

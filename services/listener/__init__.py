"""The sfls listener service."""

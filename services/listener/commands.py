"""The `sfls` subcommands of the listener: thin functions that read settings and call the service."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach this service's subcommands to the `sfls` command."""

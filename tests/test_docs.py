"""The README documents every setting and every `sfls` command, so the docs cannot drift from the code."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from devstack.settings import DevstackSettings
from shared.config_sources import STACK_FILE_ENV
from shared.settings import Settings

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def _leaves(model: type[BaseModel], path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _leaves(annotation, (*path, name))
        else:
            yield (*path, name)


# The product's settings, then the local stack's own (SFLS_DEVSTACK__*, devstack/settings.py).
SETTINGS = [leaf for leaf in _leaves(Settings) if leaf != ("config_file",)]
SETTINGS += [("devstack", *leaf) for leaf in _leaves(DevstackSettings)]


@pytest.mark.parametrize("path", SETTINGS, ids=".".join)
def test_every_setting_is_in_the_configuration_reference(path: tuple[str, ...]) -> None:
    """Each setting appears in the README by its environment name (or, for mappings, its YAML key)."""
    env = "SFLS_" + "__".join(part.upper() for part in path)
    parent, leaf = "SFLS_" + "__".join(part.upper() for part in path[:-1]), path[-1].upper()
    # A row may document siblings together: `SFLS_SYNC__RETRY__BASE_SECONDS` / `__CAP_SECONDS`.
    shared_row = re.search(rf"`{re.escape(parent)}__[A-Z_]+` / `__{re.escape(leaf)}`", README)
    assert env in README or ".".join(path) in README or shared_row, f"{env} is not documented in README.md"


def test_the_stack_file_variable_is_documented() -> None:
    """The one way the local stack's settings reach a command is in the configuration reference."""
    assert f"`{STACK_FILE_ENV}`" in README


def test_every_command_is_in_the_readme() -> None:
    """Each top-level `sfls` subcommand has a line in the README's command table."""
    import typer.main

    from services.cli import app

    command = typer.main.get_command(app)
    names = sorted(command.commands)  # type: ignore[attr-defined]
    assert {"listener", "syncer", "import", "backfill", "dlq", "requests", "test-connection", "devstack"} <= set(names)
    for name in names:
        assert f"`sfls {name}" in README, f"sfls {name} is not documented in README.md"


def test_the_acl_table_is_the_code_s() -> None:
    """Every ACL of every service (default settings) is a row of the README's ACL table, and nothing more."""
    from shared.acls import SERVICES, acls_for

    settings = Settings()
    kinds = {"topic": "Topic", "group": "Group", "transactionalId": "TransactionalId"}
    expected = []
    for service in SERVICES:
        for acl in acls_for(service, settings):
            name = acl.name + ("*" if acl.pattern == "prefixed" else "")
            expected.append(f"| `{service}` | {acl.operation} | {kinds[acl.resource_type]} `{name}`")
    assert expected
    starts = tuple(f"| `{service}` |" for service in SERVICES)
    rows = [line for line in README.splitlines() if line.startswith(starts)]
    assert [row.rsplit(" | ", 1)[0] for row in rows] == expected

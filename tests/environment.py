"""The environment of an `sfls` child process pointed at the test's broker and emulators: the one builder.

Each part reads the connection attributes by the settings' own field names, so an emulator fixture
(`SalesforceEmulator`, `LogisenseEmulator`) and a settings object (`SalesforceSettings`, ...) both serve.
The caller's own `SFLS_*` variables are dropped, so a developer's shell cannot leak into a test.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import SecretStr

SALESFORCE = (
    "instance_url",
    "ca_file",
    "client_id",
    "client_secret",
    "username",
    "password",
    "pubsub_endpoint",
    "org_id",
    "transport",
)
LOGISENSE = ("base_url", "ca_file", "client_id", "username", "password")
KAFKA = ("bootstrap_servers", "topic_prefix", "partitions")


def _plain(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return "" if value is None else str(value)


def _section(name: str, source: Any, fields: tuple[str, ...]) -> dict[str, str]:
    return {f"SFLS_{name}__{field.upper()}": _plain(getattr(source, field)) for field in fields}


def sfls_env(*, salesforce: Any = None, logisense: Any = None, kafka: Any = None, **extra: str) -> dict[str, str]:
    """This process's environment without `SFLS_*`, plus the given connections and `extra` (`SFLS_...=value`)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SFLS_")}
    if salesforce is not None:
        env |= _section("SALESFORCE", salesforce, SALESFORCE)
    if logisense is not None:
        env |= _section("LOGISENSE", logisense, LOGISENSE)
    if kafka is not None:
        env |= _section("KAFKA", kafka, KAFKA)
    return env | extra

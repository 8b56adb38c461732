"""Where sfls's settings come from, and how a bad one is reported: the sources behind shared/settings.py.

- the flat environment aliases (`SFLS_SYNC_INTERVAL_MINUTES`, ...) into their nested places;
- the YAML file named by SFLS_CONFIG (mappings and tuning; secrets refused);
- the local stack's stack.json, only when SFLS_STACK_FILE names it;
- and one line per bad field naming its variable (`format_validation_error`), never a secret's value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError as PydanticValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from shared.errors import ConfigError

ENV_PREFIX = "SFLS_"
# Names the local stack's stack.json; unset (as in every deployment), no such file is read.
STACK_FILE_ENV = "SFLS_STACK_FILE"

# Flat environment names the design documents, mapped to their nested place.
FLAT_ALIASES: dict[str, tuple[str, ...]] = {
    "SFLS_SYNC_INTERVAL_MINUTES": ("sync", "interval_minutes"),
    "SFLS_TOPIC_PREFIX": ("kafka", "topic_prefix"),
    "SFLS_LOG_LEVEL": ("observability", "log_level"),
}

# Keys that hold secrets: refused in the YAML file, redacted in logs, never printed.
SECRET_KEY_PATTERN = re.compile(r"(password|secret|token|private.?key|credential)", re.IGNORECASE)


class FlatAliasSource(PydanticBaseSettingsSource):
    """Reads the flat environment aliases of FLAT_ALIASES into their nested places."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name, path in FLAT_ALIASES.items():
            if name in self._environ:
                _set_path(data, path, self._environ[name])
        return data


class YamlFileSource(PydanticBaseSettingsSource):
    """The YAML config file: mappings and tuning. Secrets in it are refused."""

    def __init__(self, settings_cls: type[BaseSettings], path: str | None) -> None:
        super().__init__(settings_cls)
        self._path = path

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if not self._path:
            return {}
        path = Path(self._path)
        if not path.is_file():
            raise ConfigError(f"SFLS_CONFIG: config file {path} does not exist; point SFLS_CONFIG at a YAML file")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"SFLS_CONFIG: {path} is not valid YAML: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"SFLS_CONFIG: {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except OSError as exc:
            raise ConfigError(f"SFLS_CONFIG: cannot read {path}: {exc.strerror}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"SFLS_CONFIG: {path} must hold a mapping of sections (kafka, sync, mappings, ...)")
        for dotted in _secret_keys(data):
            raise ConfigError(
                f"SFLS_CONFIG: {path} sets the secret {dotted}; secrets come only from the environment "
                f"(SFLS_{dotted.upper().replace('.', '__')}) or a mounted file"
            )
        sections = sorted(name for name in self.settings_cls.model_fields if name != "config_file")
        for key in data:
            if key not in sections:
                raise ConfigError(
                    f"SFLS_CONFIG: {path} has an unknown section {key!r}; the sections are {', '.join(sections)}"
                )
        return data


class StackFileSource(PydanticBaseSettingsSource):
    """Connection defaults from the local stack's stack.json, read only when SFLS_STACK_FILE names it.

    It may hold the emulators' (throw-away) credentials; the YAML file may not hold secrets.
    """

    def __init__(self, settings_cls: type[BaseSettings], path: str | None) -> None:
        super().__init__(settings_cls)
        self._path = Path(path) if path else None

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if self._path is None:
            return {}
        try:
            stack = json.loads(self._path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"{STACK_FILE_ENV}: {self._path} does not exist; start the local stack (`sfls devstack up`) "
                f"or unset {STACK_FILE_ENV}"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{STACK_FILE_ENV}: {self._path} is not a readable JSON file: {exc}") from None
        if not isinstance(stack, dict):
            raise ConfigError(f"{STACK_FILE_ENV}: {self._path} must hold a JSON object (kafka, salesforce, logisense)")
        return {key: stack[key] for key in ("kafka", "salesforce", "logisense") if isinstance(stack.get(key), dict)}


def _set_path(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def _secret_keys(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    found: list[str] = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            found.extend(_secret_keys(value, f"{dotted}."))
        elif SECRET_KEY_PATTERN.search(str(key)) and value not in (None, ""):
            found.append(dotted)
    return found


def env_name(loc: tuple[str | int, ...]) -> str:
    """The environment variable that sets the field at `loc`, preferring a documented flat alias."""
    path = tuple(str(part) for part in loc)
    for name, alias_path in FLAT_ALIASES.items():
        if alias_path == path:
            return name
    return ENV_PREFIX + "__".join(part.upper() for part in path)


def format_validation_error(exc: PydanticValidationError, section: str | None = None) -> str:
    """One line per bad field: its variable, its config-file path, what is wrong, the value (never a secret).

    `section` names the environment-only settings group the fields belong to (`devstack`: SFLS_DEVSTACK__*).
    """
    lines = []
    for error in exc.errors():
        loc = ((section,) if section else ()) + tuple(error["loc"])
        dotted = ".".join(str(part) for part in loc)
        value = error.get("input")
        shown = "<secret>" if SECRET_KEY_PATTERN.search(dotted) else repr(value)
        where = "" if section else f" ({dotted} in the config file)"
        lines.append(f"{env_name(loc)}{where}: {error['msg']}; got {shown}")
    return "invalid settings:\n  " + "\n  ".join(lines)

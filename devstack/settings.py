"""The local stack's own settings (`SFLS_DEVSTACK__*`): where it keeps its state, its ports, its Java.

They live here, not in `shared/settings.py`: a production process has no local stack and never reads them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.config_sources import format_validation_error
from shared.errors import ConfigError


def _home_cache() -> Path:
    return Path.home() / ".cache" / "sfls"


class DevstackSettings(BaseSettings):
    """Where the local stack keeps its state and which loopback ports it uses."""

    model_config = SettingsConfigDict(env_prefix="SFLS_DEVSTACK__", frozen=True, extra="ignore", case_sensitive=False)

    state_dir: Path = Path(".devstack")
    cache_dir: Path = Field(default_factory=_home_cache)  # jars and tools, shared by checkouts
    kafka_port: int = Field(default=9092, ge=1, le=65535)
    kafka_controller_port: int = Field(default=9093, ge=1, le=65535)
    salesforce_port: int = Field(default=8443, ge=1, le=65535)
    logisense_port: int = Field(default=8444, ge=1, le=65535)
    salesforce_pubsub_port: int = Field(default=7443, ge=1, le=65535)  # the emulator's Pub/Sub API (gRPC)
    java: str = "java"


def load_devstack_settings() -> DevstackSettings:
    """Read SFLS_DEVSTACK__*; a bad value becomes one ConfigError naming the variable."""
    try:
        return DevstackSettings()
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, section="devstack")) from None

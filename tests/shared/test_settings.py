"""Settings: sources, precedence, pass-through and the messages a bad value produces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.config_sources import env_name
from shared.errors import ConfigError
from shared.settings import Settings, check_column_name, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Isolate every test from the caller's SFLS_* variables; run in an empty folder."""
    import os

    for name in list(os.environ):
        if name.startswith("SFLS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_the_documented_ones() -> None:
    """Without any configuration the design's defaults apply."""
    settings = load_settings()
    assert settings.sync.interval_minutes == 15
    assert settings.kafka.topic_prefix == "sfls"
    assert settings.logisense.client_id == "044b8ad6006845c29446b2f18e5b5909"
    assert settings.logisense.link_field == "sfdcid"
    assert settings.salesforce.channels == ("/data/AccountChangeEvent", "/data/ContactChangeEvent")


def test_flat_alias_and_nested_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """SFLS_SYNC_INTERVAL_MINUTES and SFLS_SYNC__CONCURRENCY both reach the sync section."""
    monkeypatch.setenv("SFLS_SYNC_INTERVAL_MINUTES", "0.5")
    monkeypatch.setenv("SFLS_SYNC__CONCURRENCY", "4")
    settings = load_settings()
    assert settings.sync.interval_minutes == 0.5
    assert settings.sync.concurrency == 4


def test_malformed_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A malformed value fails with a ConfigError naming the environment variable."""
    monkeypatch.setenv("SFLS_SYNC_INTERVAL_MINUTES", "abc")
    with pytest.raises(ConfigError, match="SFLS_SYNC_INTERVAL_MINUTES") as info:
        load_settings()
    assert "'abc'" in str(info.value)


def test_secret_values_never_appear_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rejected secret is shown as <secret>, not its value."""
    monkeypatch.setenv("SFLS_LOGISENSE__PASSWORD", "hunter2-secret")
    monkeypatch.setenv("SFLS_LOGISENSE__TIMEOUT_SECONDS", "-1")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "hunter2-secret" not in str(info.value)
    monkeypatch.delenv("SFLS_LOGISENSE__TIMEOUT_SECONDS")
    settings = load_settings(logisense={"password": "hunter2-secret"})
    assert "hunter2-secret" not in repr(settings)
    assert "hunter2-secret" not in str(settings.model_dump())


def test_kafka_pass_through_maps_to_librdkafka_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown SFLS_KAFKA__ keys become dotted librdkafka keys by one rule."""
    monkeypatch.setenv("SFLS_KAFKA__BOOTSTRAP_SERVERS", "broker:9093")
    monkeypatch.setenv("SFLS_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SFLS_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("SFLS_KAFKA__SSL_CA_LOCATION", "/etc/ca.pem")
    config = load_settings().kafka.librdkafka()
    assert config == {
        "bootstrap.servers": "broker:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "ssl.ca.location": "/etc/ca.pem",
    }


def test_yaml_file_is_read_and_env_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The SFLS_CONFIG file supplies mappings and tuning; the environment overrides it."""
    config = tmp_path / "sfls.yaml"
    config.write_text(
        "sync:\n  interval_minutes: 5\n  concurrency: 8\n"
        "mappings:\n  account_extensions:\n    - {salesforce: Region__c, logisense: region}\n"
        "  contact_points:\n    Billing: {email: Email, sfdcid: Id}\n"
    )
    monkeypatch.setenv("SFLS_CONFIG", str(config))
    monkeypatch.setenv("SFLS_SYNC__CONCURRENCY", "2")
    settings = load_settings()
    assert settings.sync.interval_minutes == 5
    assert settings.sync.concurrency == 2
    assert settings.mappings.account_extensions[0].logisense == "region"
    assert settings.mappings.contact_points["Billing"]["email"] == "Email"


def test_secrets_in_the_yaml_file_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A password in the config file is rejected with the environment variable to use instead."""
    config = tmp_path / "sfls.yaml"
    config.write_text("logisense:\n  password: not-here\n")
    monkeypatch.setenv("SFLS_CONFIG", str(config))
    with pytest.raises(ConfigError, match="SFLS_LOGISENSE__PASSWORD"):
        load_settings()


def test_missing_and_broken_config_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A missing or non-YAML config file fails with a message naming SFLS_CONFIG."""
    monkeypatch.setenv("SFLS_CONFIG", str(tmp_path / "absent.yaml"))
    with pytest.raises(ConfigError, match=r"SFLS_CONFIG: config file .* does not exist"):
        load_settings()
    broken = tmp_path / "broken.yaml"
    broken.write_text("sync: [unclosed\n")
    monkeypatch.setenv("SFLS_CONFIG", str(broken))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings()


def test_bad_column_name_in_mapping_is_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A LogiSense Column Name with a space or capital start is rejected, with a corrected example."""
    config = tmp_path / "sfls.yaml"
    config.write_text("mappings:\n  account_extensions:\n    - {salesforce: Region__c, logisense: Sales Region}\n")
    monkeypatch.setenv("SFLS_CONFIG", str(config))
    with pytest.raises(ConfigError, match=r"mappings\.account_extensions\.0\.logisense.*'salesRegion'"):
        load_settings()


@pytest.mark.parametrize("name", ["sfdcid", "region", "billingRegion2", "a_b"])
def test_valid_column_names(name: str) -> None:
    """Column Names starting lowercase without spaces pass."""
    assert check_column_name(name) == name


STACK = {
    "kafka": {"bootstrap_servers": "127.0.0.1:19092"},
    "salesforce": {"instance_url": "https://localhost:18443", "ca_file": "ca.pem"},
    "logisense": {"base_url": "https://localhost:18444", "username": "u"},
}


def test_stack_file_supplies_defaults_when_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """SFLS_STACK_FILE's stack.json fills connection settings; the environment still wins."""
    stack_file = tmp_path / "elsewhere" / "stack.json"
    stack_file.parent.mkdir()
    stack_file.write_text(json.dumps(STACK))
    monkeypatch.setenv("SFLS_STACK_FILE", str(stack_file))
    monkeypatch.setenv("SFLS_LOGISENSE__USERNAME", "from-env")
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert settings.salesforce.instance_url == "https://localhost:18443"
    assert settings.logisense.username == "from-env"


def test_a_stray_stack_file_in_the_working_directory_is_never_read(tmp_path: Path) -> None:
    """Without SFLS_STACK_FILE a `.devstack/stack.json` beside the process changes nothing (production)."""
    (tmp_path / ".devstack").mkdir()
    (tmp_path / ".devstack" / "stack.json").write_text(json.dumps(STACK))
    settings = load_settings()
    assert settings.kafka.bootstrap_servers != "127.0.0.1:19092"
    assert settings.salesforce.instance_url != "https://localhost:18443"
    assert settings.logisense.base_url != "https://localhost:18444"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist; start the local stack"),
        ("{not json", "is not a readable JSON file"),
        ("[1]", "JSON object"),
    ],
)
def test_a_named_stack_file_that_cannot_be_read_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str | None, message: str
) -> None:
    """SFLS_STACK_FILE naming a missing or malformed file stops start-up with the variable named."""
    stack_file = tmp_path / "stack.json"
    if content is not None:
        stack_file.write_text(content)
    monkeypatch.setenv("SFLS_STACK_FILE", str(stack_file))
    with pytest.raises(ConfigError, match="SFLS_STACK_FILE") as raised:
        load_settings()
    assert message in str(raised.value)


def test_env_name_prefers_documented_alias() -> None:
    """Error messages name the flat alias where one exists, the nested name otherwise."""
    assert env_name(("sync", "interval_minutes")) == "SFLS_SYNC_INTERVAL_MINUTES"
    assert env_name(("logisense", "base_url")) == "SFLS_LOGISENSE__BASE_URL"


def test_settings_are_frozen() -> None:
    """Settings cannot change after start-up."""
    settings = Settings()
    with pytest.raises(Exception, match="frozen"):
        settings.sync.concurrency = 3  # type: ignore[misc]

"""Broken settings never crash sfls (shared/settings.py, shared/config_sources.py).

Bad config files and environment values give exactly one ConfigError each, and through the CLI exit code 2
with one message and no traceback.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from devstack.process import sfls_command
from services.cli import app
from shared.errors import ConfigError
from shared.settings import load_settings

pytestmark = pytest.mark.failure

# --- settings ---------------------------------------------------------------------------------------

KNOWN_SECRET = "Fz9-settings-secret-q7"


@contextmanager
def _environment(env: Mapping[str, str], tmp_path: Path, config: str | bytes | None = None) -> Iterator[None]:
    """Exactly these SFLS_ variables (and the config file, when given)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SFLS_")}
    if config is not None:
        path = tmp_path / "sfls.yaml"
        path.write_bytes(config if isinstance(config, bytes) else config.encode())
        clean["SFLS_CONFIG"] = str(path)
    clean.update(env)
    with mock.patch.dict(os.environ, clean, clear=True):
        yield


BAD_SETTINGS: list[tuple[str, str | bytes | None, dict[str, str], str]] = [
    ("broken YAML", "sync:\n  interval_minutes: [1\n", {}, "is not valid YAML"),
    ("tab-indented YAML", "sync:\n\tconcurrency: 1\n", {}, "is not valid YAML"),
    ("not UTF-8", b"sync: {concurrency: \xff\xfe}\n", {}, "is not UTF-8 text"),
    ("a list, not sections", "- kafka\n- sync\n", {}, "must hold a mapping of sections"),
    ("unknown section", "mapping:\n  account_extensions: []\n", {}, "unknown section 'mapping'"),
    ("unknown field", "sync: {intervall_minutes: 5}\n", {}, "SFLS_SYNC__INTERVALL_MINUTES"),
    ("wrong type in YAML", "sync: {concurrency: lots}\n", {}, "SFLS_SYNC__CONCURRENCY"),
    ("section not a mapping", "logisense: 5\n", {}, "SFLS_LOGISENSE (logisense in the config file)"),
    ("secret in YAML", f"logisense: {{password: {KNOWN_SECRET}}}\n", {}, "sets the secret logisense.password"),
    ("Kafka secret in YAML", f"kafka: {{sasl_password: {KNOWN_SECRET}}}\n", {}, "sets the secret kafka.sasl_password"),
    ("Python tag in YAML", "sync: !!python/object/apply:os.system [id]\n", {}, "is not valid YAML"),
    (
        "bad column name",
        "mappings: {account_extensions: [{salesforce: R__c, logisense: Sales Region}]}\n",
        {},
        "'salesRegion'",
    ),
    ("missing file", None, {"SFLS_CONFIG": "/nonexistent/sfls.yaml"}, "does not exist"),
    ("wrong type in env", None, {"SFLS_SYNC__CONCURRENCY": "many"}, "SFLS_SYNC__CONCURRENCY"),
    ("out of range in env", None, {"SFLS_SYNC__CONCURRENCY": "0"}, "greater than or equal to 1"),
    ("flat alias", None, {"SFLS_SYNC_INTERVAL_MINUTES": "soon"}, "SFLS_SYNC_INTERVAL_MINUTES"),
    ("bad enum in env", None, {"SFLS_OBSERVABILITY__LOG_LEVEL": "LOUD"}, "SFLS_LOG_LEVEL"),
    ("http URL", None, {"SFLS_SALESFORCE__INSTANCE_URL": "http://x"}, "only reachable over https://"),
    ("bad JSON in env", None, {"SFLS_MAPPINGS__CONTACT_POINTS": "{Billing: email}"}, "SFLS_MAPPINGS"),
    ("section env not JSON", None, {"SFLS_LOGISENSE": KNOWN_SECRET}, "not valid JSON"),
    ("unknown field via env JSON", None, {"SFLS_SYNC__RETRY": '{"tries": 3}'}, "SFLS_SYNC__RETRY__TRIES"),
]


def _one_problem(message: str) -> bool:
    lines = message.splitlines()
    return len(lines) == 1 or (lines[0] == "invalid settings:" and len(lines) == 2)


@pytest.mark.parametrize(("case", "config", "env", "words"), BAD_SETTINGS, ids=[c[0] for c in BAD_SETTINGS])
def test_bad_settings_give_one_config_error(
    case: str, config: str | bytes | None, env: dict[str, str], words: str, tmp_path: Path
) -> None:
    """Each bad config file or environment value gives exactly one ConfigError naming it, never the secret."""
    with _environment(env, tmp_path, config), pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert words in message, case
    assert _one_problem(message) or "is not valid YAML" in message, message
    assert KNOWN_SECRET not in message


@pytest.mark.parametrize(("case", "config", "env", "words"), BAD_SETTINGS, ids=[c[0] for c in BAD_SETTINGS])
def test_cli_exits_2_with_one_message(
    case: str, config: str | bytes | None, env: dict[str, str], words: str, tmp_path: Path
) -> None:
    """`sfls` with bad settings exits with code 2 and one `error:` message, without a traceback."""
    with _environment(env, tmp_path, config):
        result = CliRunner().invoke(app, ["test-connection"])
    output = result.output  # stdout and stderr as a terminal shows them
    assert result.exit_code == 2, output
    assert output.count("error:") == 1
    assert "Traceback" not in output
    assert words.split("'", maxsplit=1)[0] in " ".join(output.split())
    assert KNOWN_SECRET not in output


@pytest.mark.parametrize("case", ["not UTF-8", "bad JSON in env", "unknown section"])
def test_cli_process_exits_2_without_traceback(case: str, tmp_path: Path) -> None:
    """`sfls` as a process (devstack.process.sfls_command) answers bad settings with exit code 2 and no traceback."""
    _, config, env, words = next(c for c in BAD_SETTINGS if c[0] == case)
    with _environment(env, tmp_path, config):
        done = subprocess.run(
            [*sfls_command(), "test-connection"],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ),
            check=False,
        )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.count("error:") == 1
    assert words.split("'", maxsplit=1)[0] in " ".join(done.stderr.split())


sections = st.sampled_from(
    ["kafka", "sync", "mappings", "logisense", "salesforce", "observability", "listener", "bogus"]
)
field_names = st.sampled_from(
    ["interval_minutes", "concurrency", "topic_prefix", "partitions", "log_level", "base_url", "retry", "password"]
) | st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=8)
yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    document=st.dictionaries(sections, st.dictionaries(field_names, yaml_values, max_size=3) | yaml_values, max_size=3),
    env_value=st.none() | st.text(max_size=20) | st.sampled_from(["{", "[]", "null", "12", '{"a": 1}']),
    env_name=st.sampled_from(
        ["SFLS_SYNC__RETRY", "SFLS_MAPPINGS", "SFLS_KAFKA__PARTITIONS", "SFLS_SYNC_INTERVAL_MINUTES"]
    ),
)
def test_any_config_loads_or_is_one_config_error(
    document: dict[str, Any], env_value: str | None, env_name: str, tmp_path: Path
) -> None:
    """Random config files and env values either load or give a ConfigError, and never echo a known secret."""
    env = {"SFLS_LOGISENSE__PASSWORD": KNOWN_SECRET, "SFLS_KAFKA__SASL_PASSWORD": KNOWN_SECRET}
    if env_value is not None and "\x00" not in env_value:
        env[env_name] = env_value
    with _environment(env, tmp_path, yaml.safe_dump(document, allow_unicode=True)):
        try:
            loaded = load_settings()
        except ConfigError as exc:
            message = str(exc)
        else:
            assert loaded.logisense.password.get_secret_value() == KNOWN_SECRET
            assert KNOWN_SECRET not in repr(loaded)
            return
    assert message.strip()
    assert KNOWN_SECRET not in message

"""Bad input never crashes sfls: malformed CDC messages, odd Salesforce records, broken settings.

- The listener's normalizer (services/listener/normalize.py) gets hypothesis-mutated CDC
  messages: every one either becomes valid change events or a MalformedCdcError whose reason is
  one of the documented labels, and the listener pipeline turns it into exactly one dead letter
  (raw message, `sfls.error.*` headers). One integration test sends bad messages through the
  Salesforce emulator's CometD stream to a real listener and reads them back from
  `<prefix>.listener.dlt` on the real broker.
- The syncer's mapping (shared/mapping.py) gets hypothesis-generated Salesforce records: a JSON
  body or a MappingError with a readable reason, never another exception.
- Bad config files and environment values give exactly one ConfigError each, and through the
  CLI exit code 2 with one message and no traceback.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from services.cli import app
from services.listener.normalize import Filters, MalformedCdcError, normalize, parse
from services.listener.pipeline import Pipeline
from services.listener.publisher import Record
from services.listener.resolve import AccountResolver
from services.listener.stream import CheckpointReplay
from services.syncer.references import References
from shared.deadletter import ERROR_CLASS, ERROR_MESSAGE, ERROR_SERVICE, Failure, dead_letter_headers
from shared.errors import ConfigError, MalformedMessageError, MappingError, PermanentError
from shared.events import ChangeEvent
from shared.kafka import Topics
from shared.mapping import map_account, map_contact
from shared.settings import AccountExtension, KafkaSettings, MappingSettings, Settings, load_settings
from tests.fixtures.salesforce import SalesforceEmulator
from tests.services.listener.conftest import ListenerThread, listener_settings, wait_until
from tests.services.listener.support import ACCOUNT_A, CONTACT_A, cdc_message, read_committed

pytestmark = pytest.mark.failure

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The reasons normalize.py documents for a malformed message (MalformedCdcError.reason).
REASONS = {
    "bad_json",
    "bad_shape",
    "missing_replay_id",
    "missing_header",
    "bad_field",
    "unknown_entity",
    "unknown_change_type",
    "bad_record_ids",
    "bad_header",
}
CHANGE_TYPES = ["CREATE", "UPDATE", "DELETE", "UNDELETE", "GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE"]
HEADER_FIELDS = [
    "entityName",
    "recordIds",
    "changeType",
    "changeOrigin",
    "transactionKey",
    "sequenceNumber",
    "commitTimestamp",
    "commitNumber",
    "commitUser",
    "changedFields",
    "nulledFields",
    "diffFields",
]
BODY_FIELDS = ["Name", "Type", "AccountId", "ParentId", "BillingAddress", "Description", "Title", "LastModifiedDate"]
DIFF = {"diff": "--- \n+++ 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n@@ -1 +1 @@\n-a\n+b\n"}
SETTINGS = Settings()
FILTERS = Filters.from_settings(SETTINGS)

# --- value strategies ------------------------------------------------------------------------------

unicode_text = st.text(max_size=40)  # every code point but surrogates: emoji, RTL, combining marks, NUL
lone_surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3)
huge_text = st.integers(min_value=100_000, max_value=2_000_000).map(lambda n: "\u00e9x" * (n // 2))
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | unicode_text
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(unicode_text, inner, max_size=4), max_leaves=8
)
odd_values = (
    json_values
    | st.just(DIFF)
    | st.just([DIFF])
    | st.just({"City": DIFF, "Street": None})
    | huge_text
    | lone_surrogates
    | st.sampled_from(["", "001", "001*", "000000000000000AAA", ACCOUNT_A, "GAP_OVERFLOW", "Account", "Opportunity"])
).map(copy.deepcopy)  # mutations must never reach the constants above


def _valid_message(draw: st.DrawFn) -> dict[str, Any]:
    entity = draw(st.sampled_from(["Account", "Contact"]))
    prefix = "001" if entity == "Account" else "003"
    ids = draw(st.lists(st.from_regex(rf"\A{prefix}[0-9A-Za-z]{{15}}\Z"), min_size=1, max_size=3))
    fields: dict[str, Any] = {"Name": draw(unicode_text)}
    if entity == "Contact" and draw(st.booleans()):
        fields["AccountId"] = ACCOUNT_A
    return cdc_message(
        entity,
        draw(st.sampled_from(CHANGE_TYPES)),
        ids,
        replay_id=draw(st.integers(min_value=1, max_value=2**62)),
        changed=draw(st.lists(st.sampled_from([*BODY_FIELDS, "BillingAddress.City", "Name.LastName"]), max_size=3)),
        fields=fields,
    )


def _mutate(draw: st.DrawFn, message: dict[str, Any]) -> Any:
    """Apply one to three mutations; some turn the message into JSON text, broken or not."""
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        if not isinstance(message, dict):
            break
        data = message.get("data")
        payload = data.get("payload") if isinstance(data, dict) else None
        header = payload.get("ChangeEventHeader") if isinstance(payload, dict) else None
        kind = draw(
            st.sampled_from(
                ["header", "header", "header", "drop", "body", "body", "payload", "data", "event", "channel", "whole"]
            )
        )
        if kind == "header" and isinstance(header, dict):
            header[draw(st.sampled_from([*HEADER_FIELDS, "extra", "replayId"]))] = draw(odd_values)
        elif kind == "drop" and isinstance(header, dict):
            header.pop(draw(st.sampled_from(HEADER_FIELDS)), None)
        elif kind == "body" and isinstance(payload, dict):
            payload[draw(st.sampled_from([*BODY_FIELDS, "Weird Name", ""]) | unicode_text)] = draw(odd_values)
        elif kind == "payload" and isinstance(data, dict):
            data["payload"] = draw(odd_values | st.just({"ChangeEventHeader": DIFF}))
        elif kind == "data":
            message["data"] = draw(odd_values)
        elif kind == "event" and isinstance(data, dict):
            data["event"] = draw(odd_values | st.fixed_dictionaries({"replayId": odd_values}))
        elif kind == "channel":
            message["channel"] = draw(odd_values)
        elif kind == "whole":
            return draw(odd_values)
    form = draw(st.sampled_from(["dict", "dict", "text", "bytes", "broken"]))
    if form == "dict":
        return message
    text = json.dumps(message)
    if form == "text":
        return text
    if form == "bytes":
        return text.encode()
    cut = draw(st.integers(min_value=0, max_value=len(text)))
    garbage = draw(st.sampled_from(["", "{", "]", "\x00", "NaN", "\ufeff", "[" * 5000]))
    return (text[:cut] + garbage).encode(errors="surrogatepass") if draw(st.booleans()) else text[:cut] + garbage


@st.composite
def cdc_messages(draw: st.DrawFn) -> Any:
    """A CDC message as delivered, then mutated: missing/extra/wrong-typed fields, text, bytes."""
    return _mutate(draw, _valid_message(draw))


# --- a pipeline without a broker --------------------------------------------------------------------


class _Publisher:
    """The part of TransactionalPublisher the pipeline uses; keeps what a commit would produce."""

    def __init__(self) -> None:
        self.topics = Topics("fuzz")
        self.committed: list[Record] = []

    def commit(self, records: Iterable[Record]) -> None:
        self.committed.extend(records)


class _Source:
    """Salesforce as the listener reads it: every contact belongs to ACCOUNT_A."""

    def query_by_ids(
        self,
        sobject: str,
        fields: Sequence[str],
        ids: Sequence[str],
        chunk_size: int = 200,
        include_deleted: bool = False,
    ) -> Iterator[Mapping[str, Any]]:
        return iter([{"Id": i, "AccountId": ACCOUNT_A} for i in ids])

    def query_all_iter(self, soql: str, include_deleted: bool = False) -> Iterator[Mapping[str, Any]]:
        return iter([{"Id": ACCOUNT_A, "AccountId": ACCOUNT_A}, {"Id": CONTACT_A, "AccountId": ACCOUNT_A}])


def _pipeline() -> tuple[Pipeline, _Publisher]:
    publisher = _Publisher()
    source = _Source()
    pipeline = Pipeline(publisher, CheckpointReplay({}, -1), AccountResolver(source), source, FILTERS)  # type: ignore[arg-type]
    return pipeline, publisher


def _raw_bytes(message: Any) -> bytes:
    if isinstance(message, bytes):
        return message
    if isinstance(message, str):
        return message.encode(errors="surrogatepass")
    return json.dumps(message, default=str).encode()


def _readable(text: str) -> bool:
    return bool(text.strip()) and text.isprintable()


# --- the normalizer ---------------------------------------------------------------------------------


@FUZZ
@given(cdc_messages())
def test_normalizer_accepts_or_names_the_defect(message: Any) -> None:
    """Any CDC message, however mangled, becomes valid change events or one MalformedCdcError with a known reason."""
    try:
        parsed = parse(message)
    except MalformedCdcError as exc:
        malformed = exc
    else:
        outcome = normalize(parsed, FILTERS, dict.fromkeys(parsed.record_ids, ACCOUNT_A))
        assert outcome.overflow is None or parsed.change_type == "GAP_OVERFLOW"
        for event in outcome.events:
            assert event.record_id in parsed.record_ids
            assert ChangeEvent.from_bytes(event.to_bytes()) == event
        return
    assert isinstance(malformed, MalformedMessageError)
    assert isinstance(malformed, PermanentError)
    assert malformed.reason in REASONS
    assert str(malformed).startswith(f"{malformed.reason}: ")
    assert _readable(str(malformed)[:2000])


@FUZZ
@given(cdc_messages())
def test_every_bad_message_is_one_dead_letter(message: Any) -> None:
    """Through the listener pipeline a bad message becomes exactly one dead letter: the raw message plus its reason."""
    pipeline, publisher = _pipeline()
    try:
        parse(message)
        expected: MalformedCdcError | None = None
    except MalformedCdcError as exc:
        expected = exc
    result = pipeline.handle([message])
    dead = [r for r in publisher.committed if r[0] == publisher.topics.listener_dlt]
    if expected is None:
        assert dead == []
        assert result.dead_letters == []
        return
    assert [f.error_class for f in result.dead_letters] == [f"MalformedCdcMessage.{expected.reason}"]
    assert not [r for r in publisher.committed if r[0] == publisher.topics.changes]
    (_topic, _key, value, headers) = dead[0]
    assert len(dead) == 1
    assert value == _raw_bytes(message)
    found = dict(headers)
    assert found[ERROR_CLASS] == f"MalformedCdcMessage.{expected.reason}".encode()
    assert found[ERROR_SERVICE] == b"listener"
    reason = found[ERROR_MESSAGE].decode()
    assert reason == str(expected)[:2000]
    assert _readable(reason)


@pytest.mark.parametrize(
    ("mutate", "reason", "words"),
    [
        (lambda m: m["data"]["payload"]["ChangeEventHeader"].pop("entityName"), "unknown_entity", "None"),
        (
            lambda m: m["data"]["payload"]["ChangeEventHeader"].update(entityName="Opportunity"),
            "unknown_entity",
            "'Opportunity' is not synced",
        ),
        (
            lambda m: m["data"]["payload"]["ChangeEventHeader"].update(recordIds=ACCOUNT_A),
            "bad_record_ids",
            "not a list",
        ),
        (lambda m: m["data"]["payload"]["ChangeEventHeader"].update(recordIds=[]), "bad_record_ids", "not a list"),
        (
            lambda m: m["data"]["payload"]["ChangeEventHeader"].update(changeType="MERGE"),
            "unknown_change_type",
            "'MERGE'",
        ),
        (
            lambda m: m["data"]["payload"]["ChangeEventHeader"].update(commitTimestamp="yesterday"),
            "bad_header",
            "commitTimestamp 'yesterday' is not a int",
        ),
        (
            lambda m: m["data"]["payload"]["ChangeEventHeader"].update(commitTimestamp=10**18),
            "bad_header",
            "not a time in epoch milliseconds",
        ),
        (lambda m: m["data"]["payload"]["ChangeEventHeader"].update(changedFields=DIFF), "bad_header", "changedFields"),
        (lambda m: m["data"]["payload"].update(ChangeEventHeader=None), "missing_header", "ChangeEventHeader"),
        (lambda m: m["data"].update(payload=[1, 2]), "bad_shape", "data.payload"),
        (lambda m: m["data"]["event"].update(replayId="7"), "missing_replay_id", "replayId"),
        (lambda m: m["data"]["payload"].update(Name="\ud800"), "bad_field", "not valid Unicode"),
    ],
)
def test_dead_letter_reasons_read_well(mutate: Any, reason: str, words: str) -> None:
    """Each kind of defect has its own reason label and a message that names the field and the bad value."""
    message = cdc_message("Account", "UPDATE", changed=["Name"], fields={"Name": "Acme"})
    mutate(message)
    with pytest.raises(MalformedCdcError) as caught:
        parse(message)
    assert caught.value.reason == reason
    assert words in str(caught.value)


def test_contact_with_a_non_id_account_is_dead_lettered() -> None:
    """A Contact whose AccountId is text but not an id is rejected by parse (it used to crash the batch)."""
    message = cdc_message("Contact", "CREATE", [CONTACT_A], fields={"AccountId": "not-an-id", "LastName": "X"})
    with pytest.raises(MalformedCdcError, match=r"^bad_field: AccountId 'not-an-id' is not an id$"):
        parse(message)


def test_deeply_nested_json_text_is_bad_json() -> None:
    """JSON text nested deeper than the parser goes is `bad_json`, not a RecursionError."""
    with pytest.raises(MalformedCdcError) as caught:
        parse("[" * 100_000 + "]" * 100_000)
    assert caught.value.reason == "bad_json"


# --- the syncer's mapping ---------------------------------------------------------------------------

REFERENCE_NAMES = {
    "account_type": {"customer": 1, "partner": 2},
    "account_status_type": {"active": 10, "closed": 11},
    "bill_group": {"bill group 1st": 20, "bill group 15th": 21},
    "ar_term": {"net 30": 30},
    "contact_type": {"billing": 40, "technical": 41},
    "country": {"canada": 50, "ca": 50, "united states": 51, "us": 51},
}
STATES = {(50, "on"): 60, (50, "ontario"): 60, (51, "ny"): 61}
MAPPING_SETTINGS = Settings(
    mappings=MappingSettings(
        account_extensions=(AccountExtension(salesforce="Region__c", logisense="region"),),
        contact_points={
            "Billing": {"email": "Email", "phone": "Phone", "address": "MailingAddress", "sfdcid": "Id"},
            "Technical": {"email": "Email", "sfdcid": "Id"},
        },
    )
)
KNOWN_IDS = {i for table in REFERENCE_NAMES.values() for i in table.values()} | set(STATES.values())


def _references() -> References:
    return References(names={k: dict(v) for k, v in REFERENCE_NAMES.items()}, states=dict(STATES))


sf_ids = st.sampled_from([ACCOUNT_A, "001000000000002AAA", "001000000000002", "", "x"]) | unicode_text
record_values = scalars | huge_text | st.lists(scalars, max_size=3) | st.dictionaries(unicode_text, scalars, max_size=3)


def _reference(kind: str) -> st.SearchStrategy[Any]:
    names = sorted(REFERENCE_NAMES[kind])
    variants = st.sampled_from(names).flatmap(
        lambda n: st.sampled_from([n, n.upper(), n.title(), f"  {n}  ", n.replace(" ", "   ")])
    )
    return variants | record_values


@st.composite
def account_records(draw: st.DrawFn) -> dict[str, Any]:
    """A Salesforce Account as the syncer's SOQL read returns it, with any field odd or missing."""
    f = MAPPING_SETTINGS.salesforce.fields
    recipient = draw(st.none() | sf_ids)
    candidates: dict[str, st.SearchStrategy[Any]] = {
        "Id": sf_ids,
        "Name": unicode_text | huge_text | record_values,
        "Type": _reference("account_type"),
        f.status: _reference("account_status_type"),
        f.bill_group: _reference("bill_group"),
        f.ar_term: _reference("ar_term"),
        f.usage_invoice_recipient: st.just(recipient) | st.none() | sf_ids,
        f.subscription_invoice_recipient: st.just(recipient) | st.none() | sf_ids,
        "ParentId": st.none() | sf_ids,
        "Region__c": record_values,
    }
    keys = draw(st.lists(st.sampled_from(sorted(candidates)), unique=True))
    return {key: draw(candidates[key]) for key in keys}


@st.composite
def contact_records(draw: st.DrawFn) -> dict[str, Any]:
    """A Salesforce Contact with any field odd or missing (contact type, country, state included)."""
    contact_type = MAPPING_SETTINGS.salesforce.fields.contact_type
    candidates: dict[str, st.SearchStrategy[Any]] = {
        "Id": sf_ids,
        "AccountId": sf_ids,
        "FirstName": unicode_text | record_values,
        "LastName": unicode_text | huge_text,
        "Title": record_values,
        contact_type: st.sampled_from(["Billing", "Technical", "billing", "Shipping"]) | record_values,
        "Email": unicode_text | record_values,
        "Phone": record_values,
        "MailingStreet": unicode_text,
        "MailingCity": unicode_text | record_values,
        "MailingState": st.sampled_from(["ON", "Ontario", "NY", "Quebec"]) | record_values,
        "MailingCountry": st.sampled_from(["CA", "Canada", "US", "Narnia"]) | record_values,
        "MailingPostalCode": record_values,
    }
    keys = draw(st.lists(st.sampled_from(sorted(candidates)), unique=True))
    return {key: draw(candidates[key]) for key in keys}


def _assert_dead_letter_ready(exc: MappingError) -> None:
    """The reason is readable text that the dead-letter headers can carry."""
    assert str(exc).strip()
    headers = dict(dead_letter_headers(Failure.from_exception(exc), service="syncer"))
    assert headers[ERROR_CLASS] == b"MappingError"
    assert headers[ERROR_MESSAGE].decode() == str(exc)[:2000]


@FUZZ
@given(account_records())
def test_account_mapping_is_a_body_or_a_mapping_error(record: dict[str, Any]) -> None:
    """Any Salesforce account maps to a JSON body with a name and the link, or to a MappingError with a reason."""
    try:
        mapped = map_account(record, MAPPING_SETTINGS, _references())
    except MappingError as exc:
        _assert_dead_letter_ready(exc)
        return
    body = mapped.body
    assert isinstance(body["name"], str)
    assert body["name"]
    assert body["name"] == body["name"].strip()
    assert body[MAPPING_SETTINGS.logisense.link_field] == mapped.sfdc_id
    for key in ("accountTypeId", "accountStatusTypeId", "billGroupId", "accountsReceivableTermsId"):
        assert key not in body or body[key] in KNOWN_IDS
    json.dumps(body)
    f = MAPPING_SETTINGS.salesforce.fields
    usage = str(record.get(f.usage_invoice_recipient) or "").strip()
    subscription = str(record.get(f.subscription_invoice_recipient) or "").strip()
    assert usage == subscription, "split invoice recipients must never map"


@FUZZ
@given(contact_records())
def test_contact_mapping_is_a_body_or_a_mapping_error(record: dict[str, Any]) -> None:
    """Any Salesforce contact maps to a contact body with points, or to a MappingError with a reason."""
    try:
        mapped = map_contact(record, MAPPING_SETTINGS, _references(), default_contact_type="Billing")
    except MappingError as exc:
        _assert_dead_letter_ready(exc)
        return
    assert mapped.contact_type_id in KNOWN_IDS
    assert mapped.points[MAPPING_SETTINGS.logisense.link_field] == {"value": mapped.sfdc_id}
    address = mapped.points.get("address", {})
    assert set(address) <= {"address1", "city", "zipCode", "countryId", "stateId"}
    json.dumps({"body": mapped.body, "points": mapped.points})


def test_mapping_errors_name_the_fix() -> None:
    """The mapping's own errors say what is wrong and what to change."""
    f = MAPPING_SETTINGS.salesforce.fields
    refs = _references()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"Id": ACCOUNT_A, "Name": "  "}, "has no Name; LogiSense requires one"),
        ({"Id": ACCOUNT_A, "Name": "A", "Type": "Reseller"}, "Account Type 'Reseller' does not exist in LogiSense"),
        (
            {"Id": ACCOUNT_A, "Name": "A", f.usage_invoice_recipient: "001000000000002AAA"},
            "LogiSense allows no split between them",
        ),
    ]
    for record, words in cases:
        with pytest.raises(MappingError) as caught:
            map_account(record, MAPPING_SETTINGS, refs)
        assert words in str(caught.value)
    with pytest.raises(MappingError, match="MailingState is set without MailingCountry"):
        map_contact({"Id": CONTACT_A, "MailingState": "ON"}, MAPPING_SETTINGS, refs, default_contact_type="Billing")
    with pytest.raises(MappingError, match="Country 'Narnia' does not exist in LogiSense"):
        map_contact(
            {"Id": CONTACT_A, "MailingCountry": "Narnia"}, MAPPING_SETTINGS, refs, default_contact_type="Billing"
        )


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
    """The installed `sfls` command, as a process, answers bad settings with exit code 2 and no traceback."""
    _, config, env, words = next(c for c in BAD_SETTINGS if c[0] == case)
    with _environment(env, tmp_path, config):
        done = subprocess.run(
            [str(Path(sys.executable).with_name("sfls")), "test-connection"],
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


# --- integration: bad messages through the real stream into the real dead-letter topic --------------

BAD_ON_THE_WIRE: list[tuple[str, dict[str, Any]]] = [
    ("unknown_change_type", {"changeType": "MERGE"}),
    ("bad_record_ids", {"recordIds": "001000000000001AAA"}),
    ("bad_header", {"commitTimestamp": 10**18}),
    ("unknown_entity", {"entityName": "Opportunity"}),
]


@pytest.mark.integration
def test_bad_cdc_messages_land_in_the_listener_dead_letter_topic(
    salesforce_emulator: SalesforceEmulator, kafka_settings: KafkaSettings
) -> None:
    """Bad stream messages land in <prefix>.listener.dlt with the raw message and a reason; good ones still flow."""
    salesforce_emulator.admin("POST", "settings", {"cometd_timeout_ms": 2000})
    listener = ListenerThread(listener_settings(salesforce_emulator, kafka_settings, initial_replay=-1)).start()
    try:
        sent: dict[str, dict[str, Any]] = {}
        for reason, header in BAD_ON_THE_WIRE:
            message = cdc_message("Account", "UPDATE", changed=["Name"], fields={"Name": f"bad {reason}"})
            message["data"]["payload"]["ChangeEventHeader"].update(header)
            salesforce_emulator.admin("POST", "cdc/publish", {"message": message})
            sent[reason] = message
        contact = cdc_message("Contact", "CREATE", [CONTACT_A], fields={"AccountId": "not-an-id", "LastName": "Z"})
        salesforce_emulator.admin("POST", "cdc/publish", {"message": contact})
        sent["bad_field"] = contact
        good = cdc_message("Account", "UPDATE", changed=["Name"], fields={"Name": f"good {uuid.uuid4().hex[:6]}"})
        salesforce_emulator.admin("POST", "cdc/publish", {"message": good})
        topics = Topics(kafka_settings.topic_prefix)
        wait_until(lambda: len(read_committed(kafka_settings, topics.changes)), 60, "the good message")
        # The contact's dead letter travels on its own channel: the good Account message does not prove it landed.
        wait_until(
            lambda: len(read_committed(kafka_settings, topics.listener_dlt)),
            60,
            f"{len(sent)} listener dead letters",
            until=lambda count: count >= len(sent),
        )
        dead = read_committed(kafka_settings, topics.listener_dlt)
    finally:
        listener.stop()
    assert len(dead) == len(sent)
    by_reason = {}
    for record in dead:
        headers = {k: (v or b"").decode() for k, v in record.headers() or []}
        assert headers["sfls.error.service"] == "listener"
        reason = headers["sfls.error.class"].removeprefix("MalformedCdcMessage.")
        assert headers["sfls.error.message"].startswith(f"{reason}: ")
        assert headers["channel"] == sent[reason]["channel"]
        by_reason[reason] = json.loads(record.value() or b"")
    assert set(by_reason) == set(sent)
    for reason, raw in by_reason.items():
        expected = sent[reason]["data"]["payload"]
        assert raw["data"]["payload"] == expected, reason
    changes = [ChangeEvent.from_bytes(m.value() or b"") for m in read_committed(kafka_settings, topics.changes)]
    assert [e.fields.get("Name") for e in changes] == [good["data"]["payload"]["Name"]]

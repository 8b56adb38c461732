"""Bad CDC messages never crash the listener (services/listener/normalize.py, pipeline.py).

Hypothesis-mutated CDC messages: every one either becomes valid change events or a MalformedCdcError whose
reason is one of the documented labels, and the listener pipeline turns it into exactly one dead letter
(raw message, `sfls.error.*` headers). One integration test sends bad messages through the Salesforce
emulator's CometD stream to a real listener and reads them back from `<prefix>.listener.dlt` on the broker.
"""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.listener.filters import Filters
from services.listener.message import MalformedCdcError
from services.listener.normalize import normalize, parse
from shared.deadletter import ERROR_CLASS, ERROR_MESSAGE, ERROR_SERVICE
from shared.errors import MalformedMessageError, PermanentError
from shared.events import ChangeEvent
from shared.kafka import Topics
from shared.settings import KafkaSettings, Settings
from tests.fixtures.salesforce import SalesforceEmulator
from tests.fuzzing import FUZZ, huge_text, json_values, lone_surrogates, unicode_text
from tests.services.listener.conftest import ListenerThread, listener_settings, wait_until
from tests.services.listener.support import ACCOUNT_A, CONTACT_A, cdc_message, offline_pipeline, read_committed

pytestmark = pytest.mark.failure

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
            # (copied: a later "header" mutation would otherwise write into the shared DIFF constant)
            data["payload"] = draw(odd_values | st.just({"ChangeEventHeader": DIFF}).map(copy.deepcopy))
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
    pipeline, publisher = offline_pipeline(FILTERS)
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
            lambda m: m["data"]["payload"]["ChangeEventHeader"].update(entityName="Lead"),
            "unknown_entity",
            "'Lead' is not synced",
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


# --- integration: bad messages through the real stream into the real dead-letter topic --------------

BAD_ON_THE_WIRE: list[tuple[str, dict[str, Any]]] = [
    ("unknown_change_type", {"changeType": "MERGE"}),
    ("bad_record_ids", {"recordIds": "001000000000001AAA"}),
    ("bad_header", {"commitTimestamp": 10**18}),
    ("unknown_entity", {"entityName": "Lead"}),
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

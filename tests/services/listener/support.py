"""Test helpers: CDC messages shaped like the ones Salesforce delivers, and committed-topic reads."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import requests
from confluent_kafka import OFFSET_BEGINNING, KafkaError, Message, TopicPartition

from services.listener.filters import Filters
from services.listener.pipeline import Pipeline
from services.listener.publisher import Record
from services.listener.resolve import AccountResolver
from services.listener.stream import CheckpointReplay
from shared import kafka
from shared.events import ChangeEvent
from shared.kafka import Topics
from shared.settings import KafkaSettings, SalesforceSettings

ACCOUNT_A = "001000000000001AAA"
ACCOUNT_B = "001000000000002AAA"
ACCOUNT_C = "001000000000003AAA"
CONTACT_A = "003000000000001AAA"
CONTACT_B = "003000000000002AAA"
COMMIT_MS = 1_719_876_940_000


def cdc_message(
    entity: str = "Account",
    change_type: str = "UPDATE",
    record_ids: list[str] | None = None,
    *,
    replay_id: int = 101,
    changed: list[str] | None = None,
    fields: dict[str, Any] | None = None,
    origin: str = "com/salesforce/api/rest/62.0",
    channel: str | None = None,
    commit_ms: int = COMMIT_MS,
) -> dict[str, Any]:
    """A CDC message as a CometD client receives it."""
    header = {
        "entityName": entity,
        "recordIds": record_ids or [ACCOUNT_A if entity == "Account" else CONTACT_A],
        "changeType": change_type,
        "changeOrigin": origin,
        "transactionKey": "00006bec-ce66-0611-9018-30a98446c9f2",
        "sequenceNumber": 1,
        "commitTimestamp": commit_ms,
        "commitNumber": 1719876940980994049,
        "commitUser": "005000000000001AAA",
        "changedFields": changed if changed is not None else [],
    }
    payload: dict[str, Any] = {"ChangeEventHeader": header, **(fields or {})}
    return {
        "data": {"schema": "Jx8Hz9ElkIUaBf-heF1ShA", "payload": payload, "event": {"replayId": replay_id}},
        "channel": channel or f"/data/{entity}ChangeEvent",
    }


def read_committed(settings: KafkaSettings, topic: str, timeout: float = 30.0) -> list[Message]:
    """Every record committed in `topic`, read with read_committed from the beginning to the end."""
    reader = kafka.consumer(settings, f"reader-{uuid.uuid4().hex[:10]}", **{"enable.partition.eof": True})
    try:
        metadata = reader.list_topics(topic, timeout=timeout)
        partitions = sorted(metadata.topics[topic].partitions)
        pending = set()
        for partition in partitions:
            low, high = reader.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            if high > low:
                pending.add(partition)
        reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        found: list[Message] = []
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            message = reader.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                pending.discard(message.partition())
                continue
            kafka.raise_for_message(message)
            found.append(message)
        assert not pending, f"could not read {topic} to its end"
        return found
    finally:
        reader.close()


def change_events(settings: KafkaSettings) -> list[ChangeEvent]:
    """The change events committed so far, in replay-id order (resyncs without one first)."""
    topic = kafka.Topics(settings.topic_prefix).changes
    events = [ChangeEvent.from_bytes(m.value() or b"") for m in read_committed(settings, topic)]
    return sorted(events, key=lambda e: (e.replay_id or 0, e.record_id))


class SalesforceApi:
    """Plain REST writes against the emulator (as any Salesforce client would make them)."""

    def __init__(self, settings: SalesforceSettings) -> None:
        self.settings = settings
        self._http = requests.Session()
        self._http.verify = settings.ca_file or True
        self._http.trust_env = False
        answer = self._http.post(
            f"{settings.instance_url}/services/oauth2/token",
            data={
                "grant_type": "password",
                "client_id": settings.client_id,
                "client_secret": settings.client_secret.get_secret_value(),
                "username": settings.username,
                "password": settings.password.get_secret_value() + settings.security_token.get_secret_value(),
            },
            timeout=30,
        )
        answer.raise_for_status()
        self._token = answer.json()["access_token"]
        self.base = f"{settings.instance_url}/services/data/v{settings.api_version}"

    def call(self, method: str, path: str, json: Any = None, client: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self._token}"}
        if client:
            headers["Sforce-Call-Options"] = f"client={client}"
        response = self._http.request(method, f"{self.base}{path}", json=json, headers=headers, timeout=30)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    def create(self, sobject: str, fields: dict[str, Any]) -> str:
        return str(self.call("POST", f"/sobjects/{sobject}", fields)["id"])

    def update(self, sobject: str, record_id: str, fields: dict[str, Any], client: str | None = None) -> None:
        self.call("PATCH", f"/sobjects/{sobject}/{record_id}", fields, client=client)

    def delete(self, sobject: str, record_id: str) -> None:
        self.call("DELETE", f"/sobjects/{sobject}/{record_id}")

    def update_many(self, sobject: str, records: list[dict[str, Any]]) -> None:
        """One sObject Collections request (one transaction) updating several records."""
        body = {"allOrNone": True, "records": [{"attributes": {"type": sobject}, **r} for r in records]}
        results = self.call("PATCH", "/composite/sobjects", body)
        assert all(r["success"] for r in results), results

    def close(self) -> None:
        self._http.close()


# --- a pipeline without a broker --------------------------------------------------------------------


class RecordingPublisher:
    """The part of TransactionalPublisher the pipeline uses; keeps what a commit would produce."""

    def __init__(self) -> None:
        self.topics = Topics("offline")
        self.committed: list[Record] = []

    def commit(self, records: Iterable[Record]) -> None:
        self.committed.extend(records)


class OneAccountSource:
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


def offline_pipeline(filters: Filters) -> tuple[Pipeline, RecordingPublisher]:
    """The listener pipeline with a recording publisher and a Salesforce where every contact is ACCOUNT_A's."""
    publisher = RecordingPublisher()
    source = OneAccountSource()
    pipeline = Pipeline(publisher, CheckpointReplay({}, -1), AccountResolver(source), source, filters)  # type: ignore[arg-type]
    return pipeline, publisher

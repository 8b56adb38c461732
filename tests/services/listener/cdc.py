"""Builders of CometD CDC messages, shaped like the ones Salesforce delivers."""

from __future__ import annotations

from typing import Any

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

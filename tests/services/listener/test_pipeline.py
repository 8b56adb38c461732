"""The listener pipeline without a broker: what one batch of CDC messages commits (services/listener/pipeline.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.listener import normalize
from services.listener.filters import Filters
from services.listener.publisher import Checkpoint
from shared.settings import Settings
from tests.services.listener.support import cdc_message, offline_pipeline


def test_each_message_is_decoded_once_replayed_and_malformed_ones_included(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch of JSON texts costs one json.loads per message, however it ends (event, dead letter, replayed)."""
    pipeline, publisher = offline_pipeline(Filters.from_settings(Settings()))
    pipeline.replay.committed(Checkpoint("/data/AccountChangeEvent", 100, None))
    broken = cdc_message(replay_id=102)
    del broken["data"]["payload"]["ChangeEventHeader"]
    batch: list[Any] = [
        json.dumps(cdc_message(replay_id=99, changed=["Name"], fields={"Name": "Old"})),  # replayed
        json.dumps(cdc_message(replay_id=101, changed=["Name"], fields={"Name": "Acme"})),  # an event
        json.dumps(broken),  # a dead letter
    ]
    decoded: list[object] = []
    real_loads = json.loads

    def counting_loads(text: str | bytes, **kwargs: Any) -> Any:
        decoded.append(text)
        return real_loads(text, **kwargs)

    monkeypatch.setattr(normalize.json, "loads", counting_loads)
    result = pipeline.handle(batch)
    assert len(decoded) == len(batch), decoded
    assert result.dropped["replayed"] == 1
    assert len(result.dead_letters) == 1
    assert sum(result.events.values()) == 1
    topics = [record[0] for record in publisher.committed]
    assert topics.count(publisher.topics.changes) == 1
    assert pipeline.replay.checkpoints["/data/AccountChangeEvent"].replay_id == 102


def test_a_checkpoint_of_the_other_transport_drops_nothing_as_replayed() -> None:
    """After a switch from Pub/Sub, CometD's replay ids are not compared with the Pub/Sub checkpoint's number; the
    first committed CometD batch replaces that checkpoint with its own."""
    pipeline, _ = offline_pipeline(Filters.from_settings(Settings()))
    opaque = Checkpoint.at("/data/AccountChangeEvent", 10**12, None, "AAAAAAAAAAEAAA==")
    pipeline.replay.committed(opaque)
    result = pipeline.handle([cdc_message(replay_id=5, changed=["Name"], fields={"Name": "Acme"})])
    assert result.dropped["replayed"] == 0
    assert sum(result.events.values()) == 1
    after = pipeline.replay.checkpoints["/data/AccountChangeEvent"]
    assert (after.transport, after.replay_id, after.pubsub_replay_id) == ("cometd", 5, None)


def test_keepalive_positions_move_the_checkpoint_without_events() -> None:
    """A Pub/Sub keepalive's position commits on its own (a checkpoint record, no event)."""
    pipeline, publisher = offline_pipeline(Filters.from_settings(Settings()))
    position = Checkpoint.at("/data/AccountChangeEvent", 42, None, "AAAAAAAAACoAAA==")
    result = pipeline.handle([], {"/data/AccountChangeEvent": position})
    assert sum(result.events.values()) == 0
    assert [record[0] for record in publisher.committed] == [publisher.topics.listener_checkpoints]
    assert pipeline.replay.checkpoints["/data/AccountChangeEvent"] == position

"""Pure logic of the stream supervisor: replay ids from our checkpoint, error classes, backoff."""

from __future__ import annotations

import random

from aiosfstream_ng.exceptions import ServerError, TransportTimeoutError

from services.listener.publisher import Checkpoint
from services.listener.stream import CheckpointReplay, RebuildError, backoff_delay, is_replay_rejected, reason_of

STALE = (
    "400::The replayId {42} you provided was invalid.  Please provide a valid ID, -2 to replay all events, "
    "or -1 to replay only new events."
)


async def test_subscribe_uses_the_committed_checkpoint_or_the_default() -> None:
    """A channel with a checkpoint resumes after it; one without uses the configured default."""
    replay = CheckpointReplay({"/data/AccountChangeEvent": Checkpoint("/data/AccountChangeEvent", 42, 1)}, -2)
    message = {"channel": "/meta/subscribe", "subscription": "/data/AccountChangeEvent"}
    await replay.outgoing([message], {})
    assert message["ext"] == {"replay": {"/data/AccountChangeEvent": 42}}
    other = {"channel": "/meta/subscribe", "subscription": "/data/ContactChangeEvent"}
    await replay.outgoing([other], {})
    assert other["ext"] == {"replay": {"/data/ContactChangeEvent": -2}}


async def test_library_cannot_move_the_checkpoint_only_a_commit_can() -> None:
    """The library's store call is ignored; `committed` moves the id and clears an override."""
    replay = CheckpointReplay({}, -1)
    await replay.extract_replay_id(
        {
            "channel": "/data/AccountChangeEvent",
            "data": {"payload": {"ChangeEventHeader": {"commitTimestamp": 5}}, "event": {"replayId": 77}},
        }
    )
    assert await replay.get_replay_id("/data/AccountChangeEvent") == -1
    replay.overrides["/data/AccountChangeEvent"] = -1
    replay.committed(Checkpoint("/data/AccountChangeEvent", 80, 6))
    assert await replay.get_replay_id("/data/AccountChangeEvent") == 80


async def test_meta_replies_feed_the_watchdog() -> None:
    """Successful connect replies refresh the connect clock; rejected subscribes are remembered."""
    replay = CheckpointReplay({}, -1)
    replay.last_connect = 0.0
    await replay.incoming(
        [
            {"channel": "/meta/connect", "successful": True},
            {"channel": "/meta/subscribe", "subscription": "/data/X", "successful": False, "error": STALE},
        ]
    )
    assert replay.last_connect > 0
    assert replay.rejected == {"/data/X": STALE}


def test_stale_replay_error_is_recognised_with_its_two_spaces() -> None:
    """Salesforce's stale replay id text is recognised; other 400s are not."""
    assert is_replay_rejected(ServerError("Subscribe request failed.", {"error": STALE}))
    other = ServerError("Subscribe request failed.", {"error": "400::The channel you requested doesn't exist"})
    assert not is_replay_rejected(other)


def test_rebuild_reasons_are_labelled() -> None:
    """Each failure class maps to its own reconnect reason label."""
    assert reason_of(TransportTimeoutError("Lost connection with the server.")) == "transport"
    assert reason_of(ServerError("Connection closed by the server", None)) == "server_error"
    assert reason_of(RebuildError("subscriptions_dropped")) == "subscriptions_dropped"
    assert reason_of(ConnectionResetError()) == "network"


def test_backoff_grows_and_is_capped() -> None:
    """The delay doubles per attempt within jitter and never exceeds the cap."""
    rng = random.Random(1)
    delays = [backoff_delay(n, 0.5, 8.0, rng) for n in range(10)]
    assert 0.25 <= delays[0] <= 0.5
    assert 2.0 <= delays[3] <= 4.0
    assert all(d <= 8.0 for d in delays)
    assert delays[-1] >= 4.0

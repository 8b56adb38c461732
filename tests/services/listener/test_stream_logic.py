"""Pure logic of the stream supervisor: replay ids from our checkpoint, error classes, backoff."""

from __future__ import annotations

import random

from aiosfstream_ng.exceptions import ServerError, TransportTimeoutError

from services.listener.publisher import Checkpoint
from services.listener.stream import CheckpointReplay, RebuildError, is_replay_rejected, reason_of, rebuild_backoff
from shared.retry import RetryPolicy
from shared.settings import ListenerSettings

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


def test_rebuild_backoff_is_the_shared_policy_from_the_listener_settings() -> None:
    """Client rebuilds wait shared/retry.py's full-jitter delays: ceilings double from the base up to the cap."""
    settings = ListenerSettings(reconnect_base_seconds=0.5, reconnect_cap_seconds=8.0)
    policy = rebuild_backoff(settings)
    assert (policy.base_seconds, policy.cap_seconds) == (0.5, 8.0)
    assert policy.max_attempts > 10**6  # a listener never stops rebuilding
    rng = random.Random(1)
    seeded = RetryPolicy(max_attempts=policy.max_attempts, base_seconds=0.5, cap_seconds=8.0, rng=rng)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (4, 4.0), (5, 8.0), (9, 8.0)]:
        delays = [seeded.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays), (attempt, max(delays))
        assert max(delays) > ceiling / 2, (attempt, max(delays))  # jitter spans the range, not a fixed wait

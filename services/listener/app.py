"""Wiring of `sfls listener`: checkpoint -> streaming supervisor -> pipeline -> Kafka, plus resyncs.

Start-up order matters: topics exist; the transactional producer is initialised (fencing any
older listener and aborting its open transaction); only then is the checkpoint topic read to
its end, so the replay ids we subscribe with are exactly what was committed. An unfinished
resync (from an earlier expired replay id) is resumed in the background.

SIGTERM and SIGINT set a flag: the batch in flight finishes its transaction, the streaming
client disconnects, a running resync stops after its current batch, and the process exits 0.
A fenced producer (another listener took over) ends the process with an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from services.listener.backfill import run_backfill
from services.listener.filters import LINE_CHANNEL, OPPORTUNITY_CHANNELS, Filters, channels
from services.listener.metrics import RESYNCS as RESYNCS_STARTED
from services.listener.metrics import TRANSPORT
from services.listener.pipeline import Pipeline
from services.listener.publisher import BackfillProgress, Checkpoint, ProducerFencedError, TransactionalPublisher
from services.listener.resolve import AccountResolver
from services.listener.stream import CheckpointReplay, StreamSupervisor
from services.listener.supervisor import RebuildError, Supervisor, rebuild_backoff
from shared import acls, kafka
from shared.acls import own_topics
from shared.budget import Work
from shared.errors import AuthorizationError
from shared.events import Entity
from shared.observability import Health
from shared.salesforce import SalesforceRest
from shared.salesforce_auth import Credentials
from shared.settings import Settings

if TYPE_CHECKING:
    from services.listener.pubsub.client import PubSubClient
    from shared.salesforce import RecordReader

log = structlog.get_logger(__name__)

RESYNC_NAME = "resync"
OPPORTUNITY_RESYNC_NAME = "resync-opportunities"
RESYNCS = (RESYNC_NAME, OPPORTUNITY_RESYNC_NAME)


class Resync:
    """The listener's full resyncs (a backfill of every account; of every won opportunity when opportunities are
    followed), one at a time, in a thread, with one transactional producer.

    An expired replay id of an opportunity channel resyncs the opportunities, of any other channel the
    accounts; a resync asked for while one runs waits for it (the same one twice runs again after)."""

    def __init__(self, settings: Settings, source: RecordReader) -> None:
        self._settings = settings
        self._source = source
        self._publisher: TransactionalPublisher | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self._queue: list[tuple[str, bool]] = []  # (resync name, resume) in the order asked
        self.completed = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def trigger(self, channel: str) -> None:
        """A replay id expired: resync the channel's entity (again, after a running resync ends)."""
        if not self._settings.listener.resync_on_expired_replay:
            log.error(
                "replay_id_expired",
                channel=channel,
                resync_on_expired_replay=False,
                consequence="changes made while the listener was away may be lost",
            )
            return
        opportunities = channel in (*OPPORTUNITY_CHANNELS, LINE_CHANNEL)
        self._ask(OPPORTUNITY_RESYNC_NAME if opportunities else RESYNC_NAME, resume=False)

    def unfinished(self, backfills: dict[str, BackfillProgress]) -> list[BackfillProgress]:
        """The resyncs an earlier listener left unfinished (resumed by `resume`)."""
        return [p for name in RESYNCS if (p := backfills.get(name)) is not None and not p.done]

    async def resume(self, names: list[str]) -> None:
        """Continue the unfinished resyncs `names`, in that order."""
        for name in names:
            self._ask(name, resume=True)

    def _ask(self, name: str, *, resume: bool) -> None:
        if (name, False) not in self._queue[1:] or resume:
            self._queue.append((name, resume))
        if not self.running:
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        backoff, failures = rebuild_backoff(self._settings.listener), 0
        while self._queue:
            name, resume = self._queue[0]
            try:
                progress = await asyncio.to_thread(self._backfill, name, resume)
            except ProducerFencedError:
                log.exception("resync_fenced")
                return
            except AuthorizationError:  # a revoked ACL: retrying cannot help; the run resumes on the next start
                log.exception("full_resync_refused")
                return
            except Exception:
                failures += 1
                pause = backoff.delay(failures)
                log.exception("resync_failed", retry_in_seconds=pause)
                await asyncio.sleep(pause)
                self._queue[0] = (name, True)
                continue
            failures = 0
            if not progress.done:  # stopped
                return
            self.completed += 1
            log.warning("resync_finished", name=name, published=progress.published, run_id=progress.run_id)
            self._queue.pop(0)

    def prepare(self) -> TransactionalPublisher:
        """Start the resync's own transactional producer now, so a refused transactional id ends the start."""
        if self._publisher is None:
            publisher = TransactionalPublisher(
                self._settings.kafka,
                f"{self._settings.listener.transactional_id}.resync",
                timeout_seconds=self._settings.listener.transaction_timeout_seconds,
            )
            publisher.start()
            self._publisher = publisher
        return self._publisher

    def _backfill(self, name: str, resume: bool) -> Any:
        return run_backfill(
            self._source,
            self.prepare(),
            name=name,
            resume=resume,
            batch_size=self._settings.listener.backfill_batch_size,
            reason="replay_expired",
            stop=self._stop,
            entity=Entity.OPPORTUNITY if name == OPPORTUNITY_RESYNC_NAME else Entity.ACCOUNT,
        )

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        if self._publisher is not None:
            await asyncio.to_thread(self._publisher.close)


def streaming_client_factory(settings: Settings) -> Any:
    """Build aiosfstream-ng clients (MANUAL replay policy, our checkpoint storage) for the supervisor."""
    from aiosfstream_ng.client import ReplayMarkerStoragePolicy

    from services.listener.streaming import streaming_client

    def build(replay: CheckpointReplay) -> Any:
        return streaming_client(
            settings.salesforce,
            replay,
            replay_storage_policy=ReplayMarkerStoragePolicy.MANUAL,
            connection_timeout=settings.listener.connection_timeout_seconds,
            max_pending_count=settings.listener.max_pending_messages,
        )

    return build


def pubsub_client_factory(settings: Settings, rest: SalesforceRest) -> Callable[[], PubSubClient]:
    """Build Pub/Sub clients on the REST client's OAuth session; the schema cache outlives each client."""
    from services.listener.pubsub.client import PubSubClient

    schemas: dict[str, Any] = {}

    async def credentials(fresh: bool) -> Credentials:
        return await asyncio.to_thread(rest.credentials, fresh=fresh)

    return lambda: PubSubClient(settings.salesforce, credentials, schemas)


async def switched_transport(settings: Settings, replay: CheckpointReplay, resync: Resync) -> None:
    """A channel checkpointed by the other transport: its replay id means nothing here, so resync, loudly.

    The channel subscribes from new events and a full resync of its entity starts (as for an expired replay id);
    the first committed batch of the configured transport replaces the checkpoint.
    """
    transport = settings.salesforce.transport
    for channel in channels(settings):
        checkpoint = replay.checkpoints.get(channel)
        if checkpoint is None or checkpoint.transport == transport:
            continue
        RESYNCS_STARTED.labels(reason="transport_switch").inc()
        log.error(
            "transport switched: the checkpoint's replay id is the other transport's; subscribing from new events "
            "and starting a full resync",
            channel=channel,
            checkpoint_transport=checkpoint.transport,
            transport=transport,
        )
        replay.overrides[channel] = -1
        await resync.trigger(channel)


async def run_listener(settings: Settings, stop: asyncio.Event, health: Health | None = None) -> None:
    """Stream CDC into Kafka until `stop` is set."""
    if settings.kafka.create_topics:
        on_wait = health.tick if health is not None else (lambda: None)
        await kafka.ensure_topics_waiting(settings.kafka, own_topics("listener", settings), on_wait=on_wait)
    await asyncio.to_thread(acls.preflight, "listener", settings)
    publisher = TransactionalPublisher(
        settings.kafka,
        settings.listener.transactional_id,
        timeout_seconds=settings.listener.transaction_timeout_seconds,
    )
    await asyncio.to_thread(publisher.start)
    state = await asyncio.to_thread(publisher.load_state)
    log.info(
        "checkpoint_loaded" if state.checkpoints else "no_checkpoint_yet",
        checkpoints={c.channel: c.replay_id for c in state.checkpoints.values()},
        initial_replay=settings.listener.initial_replay,
    )
    rest = SalesforceRest.for_service(settings, "listener", Work.ESSENTIAL, poll=True)
    replay = CheckpointReplay(state.checkpoints, settings.listener.initial_replay)
    pipeline = Pipeline(
        publisher,
        replay,
        AccountResolver(rest, settings.listener.account_cache_size),
        rest,
        Filters.from_settings(settings),
    )
    resync = Resync(settings, rest)
    await asyncio.to_thread(resync.prepare)
    unfinished = resync.unfinished(state.backfills)
    for progress in unfinished:
        log.warning("resync_resumed", name=progress.name, run_id=progress.run_id, after=progress.last_id)
    if unfinished:
        await resync.resume([p.name for p in unfinished])

    async def handle(batch: list[Any], positions: dict[str, Checkpoint] | None = None) -> None:
        try:
            await asyncio.to_thread(pipeline.handle, batch, positions)
        except (ProducerFencedError, AuthorizationError):
            raise
        except Exception as exc:
            log.exception("batch_failed")
            raise RebuildError("handler_error", str(exc)) from exc

    transport = settings.salesforce.transport
    for name in ("cometd", "pubsub"):
        TRANSPORT.labels(transport=name).set(1 if name == transport else 0)
    await switched_transport(settings, replay, resync)
    supervisor: Supervisor
    if transport == "pubsub":
        from services.listener.pubsub.supervisor import PubSubSupervisor

        supervisor = PubSubSupervisor(
            settings.listener,
            topics=channels(settings),
            replay=replay,
            client_factory=pubsub_client_factory(settings, rest),
            handle=handle,
            on_expired=resync.trigger,
            health=health,
        )
    else:
        supervisor = StreamSupervisor(
            settings.listener,
            channels=channels(settings),
            replay=replay,
            client_factory=streaming_client_factory(settings),
            handle=handle,
            on_expired=resync.trigger,
            health=health,
        )
    try:
        await supervisor.run(stop)
    finally:
        await resync.close()
        await asyncio.to_thread(publisher.close)
        log.info("listener_stopped")


def main(settings: Settings) -> None:
    """`sfls listener`: observability, signals, and the loop."""
    from shared.observability import start_observability

    health, server = start_observability("listener", settings)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_listener(settings, stop, health)

    try:
        asyncio.run(serve())
    finally:
        server.stop()

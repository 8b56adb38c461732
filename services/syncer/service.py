"""A long-running service around the consume loop (services/syncer/consume.py `BatchLoop`): the syncer and the
Requests tab writer. `stop()` is SIGTERM's path (the batch in flight finishes and commits; twice: abandoned), and
`run_loop()` runs the loop with SIGTERM and SIGINT handled, or without handlers when a test runs it in its own
event loop."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from services.syncer.consume import BatchLoop
from shared.settings import Settings


class LoopService:
    """The running service; `run()` (the subclass's) until `stop()`, or SIGTERM/SIGINT with `install_signals`."""

    def __init__(self, settings: Settings, *, install_signals: bool = True) -> None:
        self.settings = settings
        self.install_signals = install_signals
        self.loop: BatchLoop[Any] | None = None
        self._stop_early = False

    def stop(self) -> None:
        """Same as SIGTERM: finish the batch in flight, commit it, close. Twice: abandon it."""
        self._stop_early = True
        if self.loop is not None:
            self.loop.request_stop()

    async def run_loop(self, loop: BatchLoop[Any]) -> None:
        """Run `loop` until it stops (a stop asked for before it existed stops it at once)."""
        self.loop = loop
        if self._stop_early:
            loop.request_stop()
        event_loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT) if self.install_signals else ()
        for sig in signals:
            event_loop.add_signal_handler(sig, loop.request_stop)
        try:
            await loop.run()
        finally:
            for sig in signals:
                event_loop.remove_signal_handler(sig)

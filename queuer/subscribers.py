"""Who in this process wants to hear about jobs: callbacks by kind of change, and waiters for one
job's end. The listener's notifications are handed here; nothing is decoded that nobody needs."""

from __future__ import annotations

import asyncio
import inspect
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Literal
from uuid import UUID

from queuer.model import JobEvent, JobStatus

EventCallback = Callable[[JobEvent], Any]
Kind = Literal["insert", "update", "delete"]


class Subscribers:
    """Callbacks (``insert``: a job queued or put back; ``update``: any other change of a row in
    ``job``; ``delete``: a job moved to the archive) and waiters, on the client's event loop."""

    def __init__(self, spawn: Callable[[Coroutine[Any, Any, Any]], None]) -> None:
        self._spawn = spawn
        self._callbacks: dict[Kind, list[EventCallback]] = {"insert": [], "update": [], "delete": []}
        self._waiters: dict[UUID, list[asyncio.Future[None]]] = defaultdict(list)

    # -- who listens ----------------------------------------------------------------------------
    def subscribe(self, kind: Kind, callback: EventCallback) -> Callable[[], None]:
        """Add a callback; returns the function that removes it."""
        self._callbacks[kind].append(callback)
        return lambda: self._callbacks[kind].remove(callback)

    def wants(self, kind: Kind) -> bool:
        return bool(self._callbacks[kind])

    @property
    def wants_job_channel(self) -> bool:
        """Someone needs the ``job`` channel's events (inserts or updates)."""
        return self.wants("insert") or self.wants("update")

    @property
    def wants_archive_channel(self) -> bool:
        """Someone needs the ``job_archive`` channel's events (a waiter or a delete callback)."""
        return bool(self._waiters) or self.wants("delete")

    # -- waiters --------------------------------------------------------------------------------
    def wait_for(self, rid: UUID) -> asyncio.Future[None]:
        """A future settled when the job ``rid`` reaches the archive; hand it back to ``forget``."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[rid].append(future)
        return future

    def forget(self, rid: UUID, future: asyncio.Future[None]) -> None:
        waiting = self._waiters.get(rid)
        if waiting is not None:
            waiting.remove(future)
            if not waiting:
                del self._waiters[rid]

    def waited_for(self) -> list[UUID]:
        return list(self._waiters)

    def settle(self, rids: Iterable[UUID]) -> None:
        for rid in rids:
            for future in self._waiters.get(rid, []):
                if not future.done():
                    future.set_result(None)

    def cancel_waiters(self) -> None:
        for futures in self._waiters.values():
            for future in futures:
                if not future.done():
                    future.cancel()

    # -- events ---------------------------------------------------------------------------------
    def needs(self, channel: str, payload: str) -> bool:
        """Whether anyone here needs this notification decoded (looked at without a parser)."""
        if channel == "job":
            queued = '"QUEUED"' in payload or '"SCHEDULED"' in payload
            return self.wants("insert" if queued else "update")
        return self.wants_archive_channel

    def deliver(self, event: JobEvent) -> None:
        """Settle the waiters of the event's job and call the callbacks of its kind: async ones on
        the loop, plain ones in a thread."""
        if event.channel == "job":
            queued = event.status in (JobStatus.QUEUED, JobStatus.SCHEDULED)
            self._fire("insert" if queued else "update", event)
            return
        if event.rid is not None:
            self.settle([event.rid])
        self._fire("delete", event)

    def _fire(self, kind: Kind, event: JobEvent) -> None:
        loop = asyncio.get_running_loop()
        for callback in self._callbacks[kind]:
            if inspect.iscoroutinefunction(callback):
                self._spawn(callback(event))
            else:
                loop.run_in_executor(None, callback, event)

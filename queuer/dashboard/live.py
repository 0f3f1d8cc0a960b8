"""The live feed of open pages: one LISTEN connection for every viewer, started with the first
and stopped with the last, so a dashboard nobody watches costs the database nothing.

Notifications are coalesced: each viewer hears at most every ``FLUSH_SECONDS`` which tables
changed, and its page reloads its live parts once. Worker rows send no notifications, so while
someone watches one shared statement compares a digest of them every ``WORKERS_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from queuer.database.config import DatabaseConfiguration
from queuer.database.listener import Listener
from queuer.database.queue_table import CHANNEL as QUEUE_CHANNEL
from queuer.database.workflow_table import PROGRESS_CHANNEL

log = logging.getLogger("queuer.dashboard")

FLUSH_SECONDS = 0.25
WORKERS_SECONDS = 2.0
# What a page names to hear about, by channel.
TOPICS = {"job": "job", "job_archive": "archive", QUEUE_CHANNEL: "queue", PROGRESS_CHANNEL: "progress"}


class LiveFeed:
    """Fans the database's notifications out to every open page."""

    def __init__(self, config: DatabaseConfiguration, worker_digest: Callable[[], Awaitable[str]]) -> None:
        self._config = config
        self._worker_digest = worker_digest
        self._viewers: set[asyncio.Queue[frozenset[str]]] = set()
        self._changed: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[frozenset[str]]]:
        """A queue of the topics that changed, for as long as the caller stays subscribed."""
        queue: asyncio.Queue[frozenset[str]] = asyncio.Queue(maxsize=4)
        async with self._lock:
            self._viewers.add(queue)
            if not self._tasks:
                await self._start()
        try:
            yield queue
        finally:
            async with self._lock:
                self._viewers.discard(queue)
                if not self._viewers:
                    await self._stop()

    async def _start(self) -> None:
        listener = Listener(self._config, self._on_notify, self._on_connect)
        listener.set_channels(frozenset(TOPICS))
        self._tasks = [
            asyncio.create_task(listener.run(), name="queuer-dashboard-listen"),
            asyncio.create_task(self._flush(), name="queuer-dashboard-flush"),
            asyncio.create_task(self._watch_workers(), name="queuer-dashboard-workers"),
        ]
        try:
            await asyncio.wait_for(listener.connected.wait(), timeout=30)
        except TimeoutError:
            log.warning("dashboard: the live feed could not connect yet; it keeps trying")

    async def _stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        async with self._lock:
            self._viewers.clear()
            await self._stop()

    def _on_notify(self, channel: str, payload: str) -> None:
        topic = TOPICS.get(channel)
        if topic is not None:
            self._changed.add(topic)

    async def _on_connect(self) -> None:
        self._changed.update(TOPICS.values())  # what was sent while disconnected is gone: reload

    def publish(self, *topics: str) -> None:
        """Tell every viewer now (an action of this dashboard: its pages reload at once)."""
        self._changed.update(topics)

    async def _flush(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            if not self._changed:
                continue
            changed, self._changed = frozenset(self._changed), set()
            for queue in list(self._viewers):
                if queue.full():  # a viewer that does not read: it reloads once it does
                    with contextlib.suppress(asyncio.QueueEmpty):
                        queue.get_nowait()
                queue.put_nowait(changed)

    async def _watch_workers(self) -> None:
        last: str | None = None
        while True:
            try:
                digest = await self._worker_digest()
                if last is not None and digest != last:
                    self._changed.add("worker")
                last = digest
            except Exception as exc:  # the database is away: try again at the next turn
                log.debug("dashboard: reading the worker digest failed: %s", exc)
            await asyncio.sleep(WORKERS_SECONDS)

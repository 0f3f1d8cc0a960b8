"""The queue operations of a client: pause, resume, limit, overview. Fleet-wide state in
Python's own tables, announced on a channel so that every worker acts on a change at once."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from queuer.model import QueueInfo, QueueLimits, validate_queue_name

from .twins import blocking

if TYPE_CHECKING:
    from queuer.database.store import Store

    from .loop import LoopThread


class QueueOperations:
    """Mixed into ``Client``: what operators and applications do to queues."""

    _loop: LoopThread
    _store: Store

    async def pause_queue_async(self, name: str) -> None:
        """Stop every worker (Python) from starting jobs of this queue; running ones finish. Its
        jobs stay queued, untouched, until ``resume_queue``. Persisted: it holds across restarts."""
        validate_queue_name(name)
        await self._loop.call_async(self._store.queues.set_paused(name, True))

    async def resume_queue_async(self, name: str) -> None:
        """Let workers start jobs of this queue again (they hear of it at once)."""
        validate_queue_name(name)
        await self._loop.call_async(self._store.queues.set_paused(name, False))

    async def set_queue_limits_async(
        self,
        name: str,
        *,
        concurrency: int | None = None,
        rate: int | None = None,
        per: timedelta = timedelta(seconds=1),
    ) -> QueueLimits:
        """Limit the queue across every Python worker: at most ``concurrency`` of its jobs RUNNING
        at once, at most ``rate`` starts in any window of ``per``. None lifts that limit; calling
        it with neither lifts both. A changed rate starts with a full period's allowance."""
        validate_queue_name(name)
        limits = QueueLimits(concurrency=concurrency, rate=rate, per=per)
        await self._loop.call_async(self._store.queues.set_limits(name, limits))
        return limits

    async def get_queues_async(self) -> list[QueueInfo]:
        """Every queue that has jobs in ``job`` or settings: counts, pause, limits, and the age of
        its oldest queued job."""
        return await self._loop.call_async(self._store.queues.overview())

    pause_queue = blocking(pause_queue_async)
    resume_queue = blocking(resume_queue_async)
    set_queue_limits = blocking(set_queue_limits_async)
    get_queues = blocking(get_queues_async)

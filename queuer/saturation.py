"""Whether a worker is saturated, and what that means for what it listens to.

A worker whose claims keep filling every free slot claims again as soon as a slot frees, so the
wake-ups for new jobs only cost it time, and it may stop listening to them. This object holds
that state (and whether a job has run long enough that its cancellation must be heard), decides
the channels the worker needs, and reports every change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

# Jobs claimed by full claims in a row before the worker counts as saturated. Each change costs a
# few statements (UNLISTEN, later LISTEN, a claim, a check), so the state must outlast them; a rule
# of "two full claims" flipped it many times a second (see the benchmark log).
SATURATED_AFTER_JOBS = 100
LONG_JOB = 1.0  # seconds; a job running this long may well be cancelled while it runs


class Saturation:
    """Counts full claims; while saturated, ticks every ``LONG_JOB`` seconds to see whether a job
    has been running that long. ``on_change`` is called at every change and tick."""

    def __init__(self, running_ids: Callable[[], set[int]], on_change: Callable[[], None]) -> None:
        self._running_ids = running_ids
        self._on_change = on_change
        self._full_claimed = 0  # jobs taken by claims in a row that filled every free slot
        self.saturated = False
        self.long_running = False  # while saturated: a job has been running for LONG_JOB seconds
        self._timer: asyncio.TimerHandle | None = None
        self._running_at_tick: set[int] = set()

    def count_claim(self, claimed: int, full: bool) -> None:
        """Saturated once full claims in a row took ``SATURATED_AFTER_JOBS`` jobs, until the first
        short claim."""
        if full:
            self._full_claimed += claimed
            if self._full_claimed >= SATURATED_AFTER_JOBS and not self.saturated:
                self._set(True)
            return
        self._full_claimed = 0
        if self.saturated:
            self._set(False)

    def end(self) -> None:
        """The worker stops claiming: no longer saturated."""
        self._set(False)

    def channels(self, insert_or_update_listeners: bool, archive_listeners: bool) -> set[str]:
        """The channels the worker needs: all while not saturated; while saturated, ``job`` only for
        insert/update listeners and ``job_archive`` for waiters, delete listeners and the
        cancellation of jobs that run long (shorter ones end before it matters)."""
        channels: set[str] = set()
        if not self.saturated or insert_or_update_listeners:
            channels.add("job")
        if not self.saturated or archive_listeners or self.long_running:
            channels.add("job_archive")
        return channels

    def _set(self, saturated: bool) -> None:
        if saturated == self.saturated:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.saturated = saturated
        self.long_running = False
        self._running_at_tick = set()
        if saturated:
            self._timer = asyncio.get_running_loop().call_later(LONG_JOB, self._tick)
        self._on_change()

    def _tick(self) -> None:
        """A job running at the last tick and still running now has run ``LONG_JOB`` seconds (sets
        of ids are compared; nothing is done per job)."""
        running = self._running_ids()
        self.long_running = bool(running & self._running_at_tick)
        self._running_at_tick = running
        self._timer = asyncio.get_running_loop().call_later(LONG_JOB, self._tick)
        self._on_change()

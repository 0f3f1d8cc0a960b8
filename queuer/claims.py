"""How a worker splits its claims among its queues: the plain claim takes from every queue that is
neither paused nor limited (the database checks, in the claim), and each limited queue it consumes
gets a limited claim of its own, in the worker's order of precedence."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from queuer.database.job_table import Claim, ClaimFloor
from queuer.database.queue_store import QueueSettings


class Segment(NamedTuple):
    """One claim of a cycle: ``limited`` names one limited queue; otherwise ``queues`` are taken
    in order (None: every queue, by priority)."""

    queues: list[str] | None
    limited: bool = False


class QueuePlan:
    """The queues a worker consumes and what it last heard of their settings. A stale view only
    delays a limited queue's claims: the plain claim reads pauses and limits itself."""

    def __init__(self, queues: list[str] | None) -> None:
        self.queues = queues
        self.settings: dict[str, QueueSettings] = {}
        self.stale = True  # reload the settings before the next claim
        self._segments: list[Segment] | None = None
        self.any_blocked = False  # some queue is paused or limited

    def update(self, settings: dict[str, QueueSettings]) -> None:
        if settings != self.settings:
            self.settings = settings
            self._segments = None
            self.any_blocked = any(s.paused or s.limits.limited for s in settings.values())
        self.stale = False

    def _limited(self, name: str) -> bool:
        setting = self.settings.get(name)
        return setting is not None and setting.limits.limited and not setting.paused

    def segments(self) -> list[Segment]:
        """This cycle's claims in order (the same until the settings change). A worker of every
        queue serves the limited ones first (each only as far as its limits allow), then the rest
        by priority."""
        if self._segments is None:
            self._segments = self._plan()
        return self._segments

    def _plan(self) -> list[Segment]:
        if self.queues is None:
            limited = sorted(name for name in self.settings if self._limited(name))
            return [Segment([name], limited=True) for name in limited] + [Segment(None)]
        segments: list[Segment] = []
        for name in self.queues:
            if self._limited(name):
                segments.append(Segment([name], limited=True))
            elif segments and not segments[-1].limited:
                segments[-1].queues.append(name)  # type: ignore[union-attr]
            else:
                segments.append(Segment([name]))
        return segments


class ClaimCursor:
    """Where a saturated worker's next claim resumes in the claim index it walks: that of every
    queue, or one queue's part of the per-queue index (a worker listing one queue).

    Between two VACUUMs a draining backlog leaves the entries of every job claimed since at the
    head of that index, and a claim that walks from the head reads all of them (the claims of a
    million-job backlog grew several-fold between VACUUMs). After a claim that filled every free
    slot, the next one starts behind the last job it took, within that job's priority. A job that
    lands ahead of that position meanwhile (a higher priority, a retry, a row of a transaction
    that began earlier) is found by the next claim from the head: one after a claim that found
    fewer jobs than it asked for, and at least one every ``head_every`` seconds."""

    def __init__(self, head_every: float = 0.25, clock: Callable[[], float] = time.monotonic) -> None:
        self._head_every = head_every
        self._clock = clock
        self._after: ClaimFloor | None = None
        self._queues: list[str] | None = None  # the claim the position belongs to
        self._head_walked = -float("inf")

    @staticmethod
    def _resumable(claim: Claim) -> bool:
        one_queue = claim.queues is not None and len(claim.queues) == 1
        return claim.limit > 0 and not claim.skip_blocked and (claim.queues is None or one_queue)

    def place(self, claim: Claim) -> Claim:
        """``claim`` resumed behind the last full claim, where that is allowed; else as it is."""
        if not self._resumable(claim):
            return claim
        if (
            self._after is None
            or self._queues != claim.queues
            or self._clock() - self._head_walked >= self._head_every
        ):
            self._head_walked = self._clock()
            return claim
        return claim._replace(after=self._after)

    def claimed(self, claim: Claim, count: int, last: ClaimFloor | None) -> None:
        """Remember where ``claim`` (as placed) stopped: behind ``last``, the key of the last of
        the ``count`` jobs it took, if it filled its slots (a backlog is waiting); nowhere
        otherwise (the next claim starts at the head)."""
        if not self._resumable(claim):
            return
        if count < claim.limit or last is None:
            self._after = None
            return
        self._after = last
        self._queues = claim.queues

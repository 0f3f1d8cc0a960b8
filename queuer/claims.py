"""How a worker splits its claims among its queues: the plain claim takes from every queue that is
neither paused nor limited (the database checks, in the claim), and each limited queue it consumes
gets a limited claim of its own, in the worker's order of precedence."""

from __future__ import annotations

from typing import NamedTuple

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

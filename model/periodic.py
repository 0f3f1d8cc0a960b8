"""Periodic schedules declared in code: validation and the ticks of a schedule. The cron
expressions are read by ``croniter`` (the ``periodic`` extra); no I/O here."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ValidationError
from .options import Options, validate_name

CATCH_UP = ("latest", "all")
MAX_CATCH_UP = 1000  # ticks enqueued at most for one schedule after a long outage


def _croniter() -> Any:
    try:
        import croniter  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:  # pragma: no cover - the extra is part of the test install
        raise ValidationError('cron schedules need croniter: pip install "queuer[periodic]"') from exc
    return croniter.croniter


@dataclass(frozen=True)
class Periodic:
    """One schedule: ``cron`` (five fields, or six with seconds last, as croniter reads them) in
    ``timezone``, or ``every``; the task with fixed ``args``/``kwargs`` and ``options``.
    ``catch_up``: after ticks were missed (every worker down), run the most recent once
    (``"latest"``) or each of them (``"all"``)."""

    name: str
    task_name: str
    cron: str | None = None
    every: timedelta | None = None
    timezone: str = "UTC"
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: Options | None = None
    catch_up: str = "latest"

    def __post_init__(self) -> None:
        validate_name("periodic", self.name)
        if (self.cron is None) == (self.every is None):
            raise ValidationError(f"periodic {self.name!r}: give cron= or every=, one of them")
        if self.cron is not None:
            if not isinstance(self.cron, str) or len(self.cron.split()) not in (5, 6):
                raise ValidationError(
                    f"periodic {self.name!r}: cron takes 5 fields (6 with seconds), got {self.cron!r}"
                )
            if not _croniter().is_valid(self.cron):
                raise ValidationError(f"periodic {self.name!r}: invalid cron expression {self.cron!r}")
        if self.every is not None and (not isinstance(self.every, timedelta) or self.every <= timedelta(0)):
            raise ValidationError(
                f"periodic {self.name!r}: every must be a positive timedelta, got {self.every!r}"
            )
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
            raise ValidationError(f"periodic {self.name!r}: unknown time zone {self.timezone!r}") from exc
        if self.catch_up not in CATCH_UP:
            raise ValidationError(
                f"periodic {self.name!r}: catch_up is 'latest' or 'all', got {self.catch_up!r}"
            )
        if self.options is not None and not isinstance(self.options, Options):
            raise ValidationError(f"periodic {self.name!r}: options must be an Options")

    def describe(self) -> str:
        if self.cron is not None:
            return f"cron {self.cron} ({self.timezone})"
        assert self.every is not None
        return f"every {self.every}"


def ticks(
    cron: str | None, every: timedelta | None, zone: str, after: datetime, until: datetime
) -> Iterator[datetime]:
    """The ticks (aware UTC) in ``(after, until]``. Cron ticks are wall-clock times in ``zone``:
    a time that does not exist on the day clocks go forward runs at the same wall-clock offset
    later (02:30 becomes 03:30), and one that exists twice when they go back runs once (the first)."""
    if every is not None:
        step = every
        current = after + step
        while current <= until:
            yield current
            current += step
        return
    assert cron is not None
    tz = ZoneInfo(zone)
    wall = after.astimezone(tz).replace(tzinfo=None)
    iterator = _croniter()(cron, wall)
    previous = after
    while True:
        nxt: datetime = iterator.get_next(datetime)
        moment = nxt.replace(tzinfo=tz).astimezone(UTC)  # fold=0: the first of two, or later in a gap
        if moment <= previous:
            continue  # a time in the gap that lands on the next tick, or a repeated hour
        if moment > until:
            return
        previous = moment
        yield moment


def previous_tick(cron: str | None, every: timedelta | None, zone: str, now: datetime) -> datetime:
    """The most recent tick at or before ``now`` (``now`` itself for ``every``)."""
    if every is not None or cron is None:
        return now
    tz = ZoneInfo(zone)
    wall = (now + timedelta(microseconds=1)).astimezone(tz).replace(tzinfo=None)
    previous: datetime = _croniter()(cron, wall).get_prev(datetime)
    return previous.replace(tzinfo=tz).astimezone(UTC)


def next_tick(cron: str | None, every: timedelta | None, zone: str, after: datetime) -> datetime:
    """The first tick after ``after``."""
    return next(ticks(cron, every, zone, after, after + timedelta(days=400 * 20)))

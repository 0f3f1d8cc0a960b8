"""Periodic tasks declared in code (``@q.periodic``): every started worker that declares a
schedule may start its ticks, and each tick runs once across the fleet. The schedule's row moves
past a tick by compare-and-set in the transaction that enqueues the tick's job, so two workers
(or fifty, or one restarting) can never both enqueue it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from queuer.database.periodic_table import PeriodicTable
from queuer.database.store import run_steps_async
from queuer.model import Options, uuid7
from queuer.model.jsoncodec import dumps, naive_utc
from queuer.model.periodic import MAX_CATCH_UP, Periodic, next_tick, previous_tick, ticks

from .loop import LoopThread, reraise_if_cancelled
from .twins import blocking

if TYPE_CHECKING:
    from queuer.database.store import Store

    from .enqueue import JobBuilder

log = logging.getLogger("queuer.periodic")

MAX_SLEEP = 60.0  # seconds: re-read the schedules at least this often (another worker may change them)
REMOVED_AFTER = timedelta(minutes=10)  # not declared by any running worker for this long: removed


def _schedule(row: dict[str, Any]) -> tuple[str | None, timedelta | None, str]:
    every = timedelta(seconds=row["every_seconds"]) if row["every_seconds"] is not None else None
    return row["cron"], every, row["timezone"]


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None else None


class PeriodicRunner:
    """Declares a worker's schedules and enqueues their ticks; runs on the worker's loop."""

    def __init__(self, store: Store, builder: JobBuilder, declared: dict[str, Periodic]) -> None:
        self._store = store
        self._builder = builder
        self._declared = declared
        self._table = PeriodicTable(store.config.schema)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """End ``run`` between two statements (a statement cancelled mid-flight would leave its
        pooled connection busy)."""
        self._stopping.set()

    async def declare(self) -> None:
        """Write each declaration (the definition in code wins; progress stays)."""
        now = datetime.now(UTC)
        for p in self._declared.values():
            cron, every = p.cron, p.every
            start = previous_tick(cron, every, p.timezone, now)
            await self._store.execute(
                self._table.declare,
                {
                    "name": p.name,
                    "task_name": p.task_name,
                    "cron": cron,
                    "every_seconds": every.total_seconds() if every is not None else None,
                    "timezone": p.timezone,
                    "catch_up": p.catch_up,
                    "args": dumps(list(p.args), "periodic args"),
                    "kwargs": dumps(p.kwargs, "periodic kwargs"),
                    "options": dumps(p.options.to_json() if p.options else {}, "periodic options"),
                    "start": naive_utc(start),
                },
            )

    async def run(self) -> None:
        names = list(self._declared)
        touched = datetime.now(UTC)
        while not self._stopping.is_set():
            wait = MAX_SLEEP
            try:
                now = datetime.now(UTC)
                if now - touched > timedelta(seconds=MAX_SLEEP):
                    await self._store.execute(self._table.touch, {"names": names})
                    touched = now
                for row in await self._store.execute(self._table.of_names, {"names": names}):
                    await self._fire(dict(row), now)
                    nxt = next_tick(*_schedule(row), max(now, _aware(row["last_tick"]) or now))
                    wait = min(wait, (nxt - datetime.now(UTC)).total_seconds())
            except psycopg.Error as exc:
                reraise_if_cancelled()
                log.warning("periodic schedules: %s; trying again", exc)
                wait = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), max(wait, 0.01))

    async def _fire(self, row: dict[str, Any], now: datetime) -> None:
        last = _aware(row["last_tick"])
        if last is None:
            return
        due = list(ticks(*_schedule(row), last, now))
        if not due:
            return
        chosen = due[-1:] if row["catch_up"] == "latest" else due[-MAX_CATCH_UP:]
        options = Options.from_json(row["options"]) or Options()
        news = [
            self._builder.encode(
                replace(
                    options,
                    metadata={**(options.metadata or {}), "periodic": row["name"], "tick": tick.isoformat()},
                ),
                row["task_name"],
                row["args"],
                row["kwargs"],
                uuid7(),
                None,
            )
            for tick in chosen
        ]
        async with self._store.connection() as conn, conn.transaction():
            cur = conn.cursor()
            params = {"name": row["name"], "tick": naive_utc(due[-1]), "last": row["last_tick"]}
            await cur.execute(self._table.advance, params)
            if await cur.fetchone() is None:
                return  # another worker took these ticks
            for new in news:
                await run_steps_async(cur, self._store.insert_steps(new))
        log.info(
            "periodic %s: enqueued %d tick(s), the last for %s", row["name"], len(news), due[-1].isoformat()
        )


def overview(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What ``queuer periodic list`` shows of each schedule."""
    now = datetime.now(UTC)
    listed = []
    for row in rows:
        last = _aware(row["last_tick"])
        cron, every, zone = _schedule(row)
        listed.append(
            {
                "name": row["name"],
                "task_name": row["task_name"],
                "schedule": f"cron {cron}" if cron else f"every {every}",
                "timezone": zone,
                "catch_up": row["catch_up"],
                "last_run": last.isoformat() if last else None,
                "next_run": next_tick(cron, every, zone, max(now, last or now)).isoformat(),
                "active": row["silent_seconds"] < REMOVED_AFTER.total_seconds(),
                "args": row["args"],
                "kwargs": row["kwargs"],
                "options": json.loads(json.dumps(row["options"])),
            }
        )
    return listed


class PeriodicOperations:
    """Mixed into ``Client``: read the declared schedules."""

    _loop: LoopThread
    _store: Store

    async def get_periodic_async(self) -> list[dict[str, Any]]:
        """Every declared schedule: its task, schedule, time zone, last and next run, and whether
        a running worker still declares it (``active``; false once none has for 10 minutes)."""

        async def read() -> list[dict[str, Any]]:
            rows = await self._store.execute(PeriodicTable(self._store.config.schema).all, {})
            return overview([dict(r) for r in rows])

        result: list[dict[str, Any]] = await self._loop.call_async(read())
        return result

    get_periodic = blocking(get_periodic_async)

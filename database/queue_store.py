"""Queues' database work as typed calls (SQL in ``queue_table``; the claim in ``job_table``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, NamedTuple

from psycopg.rows import DictRow

from queuer.model import Job, QueueInfo, QueueLimits

from .job_table import Claim, JobTable, cycle_params
from .pool import PoolType
from .queue_table import QueueTable

DecodeClaimed = Callable[[dict[str, Any]], Job]
Execute = Callable[[str, Any], Awaitable[list[DictRow]]]


class QueueSettings(NamedTuple):
    """What a worker needs to know of a queue to plan its claims."""

    paused: bool
    limits: QueueLimits


class LimitedClaim(NamedTuple):
    """What a limited claim took; when the rate allows the queue's next start (seconds from now;
    None: the rate does not stop it); whether its concurrency is used up."""

    jobs: list[Job]
    wake_in: float | None
    full: bool  # its concurrency is used up: a job of the queue must end first


def _limits(row: DictRow) -> QueueLimits:
    per = row["per_seconds"]
    return QueueLimits(
        concurrency=row["concurrency"],
        rate=row["rate"],
        per=timedelta(seconds=per) if per else timedelta(seconds=1),
    )


class QueueStore:
    """Pause, resume and limit queues; read their settings and overview; claim from a limited
    queue without ever exceeding its limits, whatever other workers do at the same time."""

    def __init__(
        self, table: QueueTable, jobs: JobTable, execute: Execute, pool: PoolType, decode: DecodeClaimed
    ) -> None:
        self._table = table
        self._jobs = jobs
        self._execute = execute
        self._pool = pool
        self._decode = decode

    async def set_paused(self, name: str, paused: bool) -> None:
        await self._execute(self._table.set_paused, {"name": name, "paused": paused})

    async def set_limits(self, name: str, limits: QueueLimits) -> None:
        params = {
            "name": name,
            "concurrency": limits.concurrency,
            "rate": limits.rate,
            "per": limits.per if limits.rate is not None else None,
        }
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(self._table.set_limits, params)
            row = await cur.fetchone()
            if row is not None and row["rate_changed"]:
                await conn.execute(self._table.ring_clear, params)
                if limits.rate:
                    await conn.execute(self._table.ring_fill, params)

    async def settings(self) -> dict[str, QueueSettings]:
        rows = await self._execute(self._table.settings, ())
        return {r["name"]: QueueSettings(r["paused"], _limits(r)) for r in rows}

    async def overview(self) -> list[QueueInfo]:
        return [
            QueueInfo(
                name=r["name"],
                queued=r["queued"],
                scheduled=r["scheduled"],
                running=r["running"],
                paused=r["paused"],
                limits=_limits(r),
                oldest_queued_seconds=r["oldest_queued_seconds"],
            )
            for r in await self._execute(self._table.overview, ())
        ]

    async def claim_limited(self, worker_id: int, worker_rid: Any, name: str, claim: Claim) -> LimitedClaim:
        """Claim up to ``claim.limit`` jobs of the limited queue ``name``: no more than its
        concurrency leaves room for, and no more starts than its rate allows in the last period."""
        async with self._pool.connection() as conn, conn.transaction():
            row = await (await conn.execute(self._table.lock, {"name": name})).fetchone()
            if row is None or row["paused"] or claim.limit <= 0:
                return LimitedClaim([], None, False)
            rate, head = row["rate"], row["rate_head"]
            slots = [(head + i) % rate for i in range(min(claim.limit, rate))] if rate else []
            found = await (await conn.execute(self._table.room, {"name": name, "slots": slots})).fetchone()
            assert found is not None
            room = claim.limit
            full = row["concurrency"] is not None and row["concurrency"] - found["running"] <= 0
            if row["concurrency"] is not None:
                room = min(room, row["concurrency"] - found["running"])
            waits: list[float] = found["waits"] or []
            wake_in = None
            if rate is not None:
                free = next((i for i, wait in enumerate(waits) if wait > 0), len(waits))
                if free < claim.limit and rate > 0:
                    # The next start needs the first slot not free now, or (all R were free and
                    # are taken now) the oldest again, a period from now.
                    wake_in = waits[free] if free < len(waits) else float(row["per_seconds"])
                room = min(room, free)
            jobs: list[Job] = []
            if room > 0:
                limited = claim._replace(limit=room, queues=[name], take_limited=True)
                cur = await conn.execute(
                    self._jobs.cycle["lean", "listed"],
                    cycle_params(worker_id, worker_rid, [], [], [], limited),
                )
                jobs = [self._decode(dict(r)) for r in await cur.fetchall()]
            if rate and jobs:
                await conn.execute(
                    self._table.ring_take,
                    {"name": name, "slots": slots[: len(jobs)], "head": (head + len(jobs)) % rate},
                )
            return LimitedClaim(jobs, wake_in, full)

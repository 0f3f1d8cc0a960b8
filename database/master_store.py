"""The master role's database work as typed calls (its SQL lives in ``master_table``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

from psycopg.rows import DictRow

from queuer.model import MasterSettings, OnError, may_run_again
from queuer.model.jsoncodec import dumps

from .master_table import MasterTable
from .pool import PoolType

Execute = Callable[[str, Sequence[Any] | Mapping[str, Any]], Awaitable[list[DictRow]]]


class MasterStore:
    """Acquire, renew and release the lock on ``master`` row 1; find dead workers and rescue their
    jobs; archive retention."""

    def __init__(self, table: MasterTable, execute: Execute, pool: PoolType) -> None:
        self._table = table
        self._execute = execute
        self._pool = pool

    async def acquire(
        self, worker_id: int, worker_rid: UUID, settings: MasterSettings
    ) -> tuple[bool, UUID | None]:
        """Take or renew the lock: (granted, the previous holder's rid or None)."""
        rows = await self._execute(
            self._table.acquire,
            {
                "worker_id": worker_id,
                "worker_rid": worker_rid,
                "settings": dumps(settings.to_json(), "master settings"),
                "lock_timeout": settings.master_lock_timeout,
            },
        )
        if not rows:
            return False, None
        previous: UUID | None = rows[0]["worker_rid"]
        return True, previous

    async def release(self, worker_id: int) -> None:
        await self._execute(self._table.release, (worker_id,))

    async def mark_stale_workers(self, go_threshold: timedelta) -> list[UUID]:
        """Mark silent workers STOPPED (a Python worker by its own limit); their rids."""
        rows = await self._execute(self._table.stale_workers, {"threshold": go_threshold})
        return [r["rid"] for r in rows]

    async def rescue_jobs(self, go_threshold: timedelta) -> tuple[int, int]:
        """The RUNNING jobs of dead workers, in one transaction: back to the queue when their retry
        policy allows another run, else archived FAILED saying the worker died. (requeued, failed)"""
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(self._table.dead_jobs, {"threshold": go_threshold})
            dead = await cur.fetchall()
            if not dead:
                return 0, 0
            again: list[int] = []
            give_up: list[int] = []
            for row in dead:
                allowed = may_run_again(_on_error(row["on_error"]), row["attempts"])
                (again if allowed else give_up).append(row["id"])
            cur = await conn.execute(self._table.rescue, {"again": again, "give_up": give_up})
            counts = await cur.fetchone()
        return (int(counts["requeued"]), int(counts["failed"])) if counts else (0, 0)

    async def delete_stopped_workers(self, older_than: timedelta) -> None:
        await self._execute(self._table.delete_workers, (older_than,))
        await self._execute(self._table.forget_workers, ())

    async def archive_is_hypertable(self, schema: str) -> bool:
        present = await self._execute(self._table.has_timescale, ())
        if not (present and present[0]["present"]):
            return False
        rows = await self._execute(self._table.is_hypertable, (schema,))
        return bool(rows and rows[0]["hyper"])

    async def set_retention_policy(self, retention: timedelta) -> None:
        """TimescaleDB's retention policy on the archive: whole chunks dropped (none when 0)."""
        name = self._table.archive_name
        await self._execute(self._table.remove_retention_policy, (name,))
        if retention > timedelta(0):
            await self._execute(self._table.add_retention_policy, (name, retention))

    async def delete_old_archive_rows(self, retention: timedelta, batch: int, batches: int) -> int:
        """Delete archive rows older than ``retention`` in bounded batches; how many went."""
        deleted = 0
        for _ in range(batches):
            async with self._pool.connection() as conn:
                cur = await conn.execute(self._table.retention_batch, (retention, batch))
                deleted += cur.rowcount
                if cur.rowcount < batch:
                    break
        return deleted


def _on_error(data: Any) -> OnError | None:
    """A stored ``on_error`` as the policy; one that cannot be read allows no retry."""
    try:
        return OnError.from_json(data)
    except Exception:
        return None

"""The master role: one worker at a time holds ``master`` row 1 and handles dead workers.

Every ``master_poll_interval`` each candidate runs the acquire-or-renew statement. The holder then
ticks: workers whose heartbeat is older than ``worker_stale_threshold`` are marked STOPPED; RUNNING
jobs of STOPPED (or deleted) workers run again when their retry policy allows, otherwise they are
archived FAILED saying the worker died; old STOPPED workers without running jobs are deleted.
A renewal that returns no row means another process took the lock: we stop acting as master.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from uuid import UUID

import psycopg

from queuer.database.store import Store
from queuer.model import MasterSettings
from queuer.model.jsoncodec import dumps

from .loop import reraise_if_cancelled

log = logging.getLogger("queuer.master")

GO_STALE_THRESHOLD = timedelta(minutes=2)
RETENTION_BATCH = 5000
RETENTION_BATCHES_PER_TICK = 20


class MasterRole:
    """Runs the candidate/master loop for one worker until cancelled."""

    def __init__(self, store: Store, worker_id: int, worker_rid: UUID, settings: MasterSettings) -> None:
        self.store = store
        self.worker_id = worker_id
        self.worker_rid = worker_rid
        self.settings = settings
        self.table = store.masters
        self.is_master = False
        self._hypertable = False
        if settings.worker_stale_threshold < GO_STALE_THRESHOLD:
            log.warning(
                "worker_stale_threshold %s is below the Go library's 2 minutes: do not use it where Go "
                "workers share the database (they heartbeat every 30 s)",
                settings.worker_stale_threshold,
            )
        if settings.master_lock_timeout < timedelta(minutes=1):
            log.warning(
                "master_lock_timeout below 1 minute reads as 0 minutes to Go masters (docs/go-interop.md §8)"
            )

    async def run(self) -> None:
        interval = self.settings.master_poll_interval.total_seconds()
        while True:
            try:
                await self._poll()
            except psycopg.Error as exc:
                reraise_if_cancelled()
                log.warning("master poll failed: %s", exc)
                await self.store.pool.check()
            reraise_if_cancelled()  # maintenance inside the tick swallows driver errors
            await asyncio.sleep(interval)

    async def _poll(self) -> None:
        rows = await self.store.execute(
            self.table.acquire,
            {
                "worker_id": self.worker_id,
                "worker_rid": self.worker_rid,
                "settings": dumps(self.settings.to_json(), "master settings"),
                "lock_timeout": self.settings.master_lock_timeout,
            },
        )
        if not rows:
            if self.is_master:
                log.warning("worker %s lost the master lock to another process", self.worker_rid)
            self.is_master = False
            return
        if not self.is_master:
            log.info("worker %s is now master (previous: %s)", self.worker_rid, rows[0]["worker_rid"])
            await self._install_retention()
            self.is_master = True
        await self._tick()

    async def _install_retention(self) -> None:
        """With TimescaleDB, retention is a policy (whole chunks dropped); install ours on taking
        the role. Without it, each tick deletes old rows in bounded batches."""
        present = await self.store.execute(self.table.has_timescale, ())
        self._hypertable = False
        if present and present[0]["present"]:
            rows = await self.store.execute(self.table.is_hypertable, (self.store.config.schema,))
            self._hypertable = bool(rows and rows[0]["hyper"])
        if not self._hypertable:
            return
        name = self.table.archive_name
        await self.store.execute("SELECT remove_retention_policy(%s, if_exists => TRUE)", (name,))
        if self.settings.retention_archive > timedelta(0):
            await self.store.execute(
                "SELECT add_retention_policy(%s, drop_after => %s::interval)",
                (name, self.settings.retention_archive),
            )

    async def _delete_old_archive_rows(self) -> int:
        deleted = 0
        for _ in range(RETENTION_BATCHES_PER_TICK):
            async with self.store.pool.connection() as conn:
                cur = await conn.execute(
                    self.table.retention_batch, (self.settings.retention_archive, RETENTION_BATCH)
                )
                deleted += cur.rowcount
                if cur.rowcount < RETENTION_BATCH:
                    break
        return deleted

    async def _tick(self) -> None:
        s = self.settings
        threshold = {"threshold": s.worker_stale_threshold}
        stale = await self.store.execute(self.table.stale_workers, threshold)
        for row in stale:
            log.warning("worker %s stopped heartbeating: marked STOPPED", row["rid"])
        counts = await self.store.execute(self.table.rescue, threshold)
        if counts and (counts[0]["requeued"] or counts[0]["failed"]):
            log.warning(
                "rescued jobs of dead workers: %s back in the queue, %s failed (no retries left)",
                counts[0]["requeued"],
                counts[0]["failed"],
            )
        await self.store.execute(self.table.delete_workers, (s.worker_delete_threshold,))
        await self.store.execute(self.table.forget_workers, ())
        # A producer's big batch: autovacuum may come minutes later.
        await self.store.refresh_statistics(self.store.jobs.needs_analyze)
        if s.retention_archive > timedelta(0) and not self._hypertable:
            deleted = await self._delete_old_archive_rows()
            if deleted:
                log.info("retention: deleted %d archive rows older than %s", deleted, s.retention_archive)

    async def release(self) -> None:
        """Give the lock up at a clean stop, so another candidate takes over at its next poll."""
        if self.is_master:
            await self.store.execute(self.table.release, (self.worker_id,))
            self.is_master = False

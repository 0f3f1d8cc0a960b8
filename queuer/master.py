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
        self.master = store.master
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
                await self.store.check_connections()
            reraise_if_cancelled()  # maintenance inside the tick swallows driver errors
            await asyncio.sleep(interval)

    async def _poll(self) -> None:
        granted, previous = await self.master.acquire(self.worker_id, self.worker_rid, self.settings)
        if not granted:
            if self.is_master:
                log.warning("worker %s lost the master lock to another process", self.worker_rid)
            self.is_master = False
            return
        if not self.is_master:
            log.info("worker %s is now master (previous: %s)", self.worker_rid, previous)
            await self._install_retention()
            self.is_master = True
        await self._tick()

    async def _install_retention(self) -> None:
        """With TimescaleDB, retention is a policy (whole chunks dropped); install ours on taking
        the role. Without it, each tick deletes old rows in bounded batches."""
        self._hypertable = await self.master.archive_is_hypertable(self.store.config.schema)
        if self._hypertable:
            await self.master.set_retention_policy(self.settings.retention_archive)

    async def _tick(self) -> None:
        s = self.settings
        for rid in await self.master.mark_stale_workers(s.worker_stale_threshold):
            log.warning("worker %s stopped heartbeating: marked STOPPED", rid)
        requeued, failed = await self.master.rescue_jobs(s.worker_stale_threshold)
        if requeued or failed:
            log.warning(
                "rescued jobs of dead workers: %s back in the queue, %s failed (no retries left)",
                requeued,
                failed,
            )
        await self.master.delete_stopped_workers(s.worker_delete_threshold)
        expired = await self.store.expire_jobs()
        if expired:
            log.info("expiry: %d job(s) not started in time archived CANCELLED", expired)
        released, cancelled = await self.store.workflows.sweep()
        if released or cancelled:
            log.info("workflows: %d held job(s) released, %d cancelled by the sweep", released, cancelled)
        await self.store.workflows.forget()
        vacuumed = await self.store.maintenance.vacuum_if_needed()
        if vacuumed:
            log.info("maintenance: vacuumed %s", ", ".join(vacuumed))
        # A producer's big batch: autovacuum may come minutes later.
        await self.store.refresh_statistics("many_changes")
        if s.retention_archive > timedelta(0) and not self._hypertable:
            deleted = await self.master.delete_old_archive_rows(
                s.retention_archive, RETENTION_BATCH, RETENTION_BATCHES_PER_TICK
            )
            if deleted:
                log.info("retention: deleted %d archive rows older than %s", deleted, s.retention_archive)

    async def release(self) -> None:
        """Give the lock up at a clean stop, so another candidate takes over at its next poll."""
        if self.is_master:
            await self.master.release(self.worker_id)
            self.is_master = False

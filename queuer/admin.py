"""Operator access without a worker: listing, stats, cancel, stop requests, re-add (the CLI).

A ``Queuer`` registers a worker row when built; the command line must not leave one behind per
invocation, so it drives the same ``Store`` (the same statements, decoding and errors) directly,
on an event loop of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar
from uuid import UUID

from queuer.database import DatabaseConfiguration, install_schema
from queuer.database.encryption import PgpCodec
from queuer.database.schema import schema_installed
from queuer.database.store import Store
from queuer.model import Job, QueuerError, Worker, WorkerStatus

T = TypeVar("T")


class SchemaMissingError(QueuerError):
    """The configured schema holds no queuer tables (run ``queuer init``)."""


class Admin:
    """Blocking calls over a ``Store`` for one command."""

    def __init__(self, config: DatabaseConfiguration, encryption_key: str | None = None) -> None:
        self.config = config
        self.store = Store(config, 2, PgpCodec(encryption_key) if encryption_key else None)
        self._runner = asyncio.Runner()
        self._open = False

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coro)

    def connect(self, require_schema: bool = True) -> None:
        """Fail fast (one short connection) when the server or the schema is missing, then open
        the pool (which would otherwise retry for half a minute)."""
        self._call(self._connect(require_schema))

    async def _connect(self, require_schema: bool) -> None:
        if require_schema and not await schema_installed(self.config):
            raise SchemaMissingError(
                f"no queuer schema in {self.config.database!r} schema {self.config.schema!r} (run: queuer init)"
            )
        await self.store.open()
        self._open = True

    def close(self) -> None:
        if self._open:
            self._call(self.store.close())
        self._runner.close()

    def init(self) -> list[str]:
        return self._call(install_schema(self.config))

    # -- reading --------------------------------------------------------------------------------
    def list_jobs(
        self,
        ended: bool,
        status: str | None,
        task: str | None,
        search: str | None,
        last_id: int,
        entries: int,
    ) -> list[Job]:
        return self._call(self.store.list_jobs(ended, status, task, search, last_id, entries))

    def list_workers(
        self, status: str | None, search: str | None, last_id: int, entries: int
    ) -> list[Worker]:
        return self._call(self.store.list_workers(status, search, last_id, entries))

    def connections(self) -> list[dict[str, Any]]:
        return self._call(self.store.connections())

    def get_job(self, rid: UUID, ended: bool | None) -> Job:
        """One job: from ``job`` or ``job_archive`` as asked, or (None) wherever it is."""
        if ended is None:
            return self._call(self.store.find_job(rid))
        return self._call(self.store.get_job(rid, ended))

    def get_worker(self, rid: UUID) -> Worker:
        return self._call(self.store.get_worker(rid))

    def stats(self) -> dict[str, Any]:
        return self._call(self._stats())

    async def _stats(self) -> dict[str, Any]:
        counts, recent = await self.store.counts()
        master = await self.store.get_master()
        return {
            "counts": [
                {"table": r["tbl"], "status": r["status"], "task": r["task_name"], "count": r["n"]}
                for r in counts
            ],
            "finished_last_minute": recent["finished_last_minute"],
            "throughput_per_second": round(recent["finished_last_minute"] / 60, 2),
            "oldest_queued_seconds": recent["oldest_queued_seconds"],
            "master_worker_rid": str(master.worker_rid) if master.worker_rid else None,
        }

    # -- writing --------------------------------------------------------------------------------
    def cancel_job(self, rid: UUID) -> Job:
        return self._call(self.store.cancel(rid))

    def stop_worker(self, rid: UUID, graceful: bool) -> Worker:
        status = WorkerStatus.STOPPING if graceful else WorkerStatus.STOPPED
        return self._call(self.store.request_stop(rid, status))

    def readd(self, rid: UUID) -> Job:
        return self._call(self.store.readd(rid))

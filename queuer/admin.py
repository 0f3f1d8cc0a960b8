"""Operator access without a worker: listing, stats, cancel, stop requests, re-add (the CLI).

A ``Queuer`` registers a worker row when built; the command line must not leave one behind per
invocation, so it uses this small blocking client over the same statements instead.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from queuer.database import DatabaseConfiguration, connection_kwargs, install_schema
from queuer.database.encryption import PgpCodec
from queuer.database.master_table import MasterTable
from queuer.database.store import Store
from queuer.model import (
    ConfigurationError,
    Job,
    JobNotFoundError,
    QueuerError,
    Worker,
    WorkerNotFoundError,
    WorkerStatus,
    uuid7,
)


class SchemaMissingError(QueuerError):
    """The configured schema holds no queuer tables (run ``queuer init``)."""


class Admin:
    """One connection to a queuer database, for operators."""

    def __init__(self, config: DatabaseConfiguration, encryption_key: str | None = None) -> None:
        self.config = config
        self.store = Store(config, 1, PgpCodec(encryption_key) if encryption_key else None)
        self.masters = MasterTable(config.schema)
        self._conn: psycopg.Connection[Any] | None = None

    def connect(self, require_schema: bool = True) -> None:
        kwargs = {**connection_kwargs(self.config), "connect_timeout": 5}
        self._conn = psycopg.connect(self.config.conninfo(), **kwargs)
        if require_schema:
            row = self._rows("SELECT to_regclass(%s) AS t", (f"{self.config.schema}.job",))
            if not row or row[0]["t"] is None:
                raise SchemaMissingError(
                    f"no queuer schema in {self.config.database!r} schema {self.config.schema!r} (run: queuer init)"
                )

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def _rows(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        assert self._conn is not None, "connect() first"
        with self._conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []

    # -- schema ---------------------------------------------------------------------------------
    def init(self) -> list[str]:
        import asyncio

        return asyncio.run(install_schema(self.config))

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
        query = self.store.jobs.filtered_ended if ended else self.store.jobs.filtered_jobs
        params = {"status": status, "task": task, "search": search, "last_id": last_id, "entries": entries}
        return [self.store.job_from_row(r) for r in self._rows(query, params)]

    def list_workers(
        self, status: str | None, search: str | None, last_id: int, entries: int
    ) -> list[Worker]:
        params = {"status": status, "search": search, "last_id": last_id, "entries": entries}
        return [Worker.from_row(r) for r in self._rows(self.store.workers.filtered, params)]

    def connections(self) -> list[dict[str, Any]]:
        return self._rows(self.store.workers.connections)

    def get_job(self, rid: UUID, ended: bool) -> Job:
        rows = self._rows(self.store.jobs.select_ended if ended else self.store.jobs.select_job, (rid,))
        if not rows:
            raise JobNotFoundError(f"no job with rid {rid} in {'job_archive' if ended else 'job'}")
        return self.store.job_from_row(rows[0])

    def get_worker(self, rid: UUID) -> Worker:
        rows = self._rows(self.store.workers.select, (rid,))
        if not rows:
            raise WorkerNotFoundError(f"no worker with rid {rid}")
        return Worker.from_row(rows[0])

    def stats(self) -> dict[str, Any]:
        counts = self._rows(self.store.jobs.stats)
        recent = self._rows(self.store.jobs.recent)[0]
        master = self._rows(self.masters.select)
        return {
            "counts": [
                {"table": r["tbl"], "status": r["status"], "task": r["task_name"], "count": r["n"]}
                for r in counts
            ],
            "finished_last_minute": recent["finished_last_minute"],
            "throughput_per_second": round(recent["finished_last_minute"] / 60, 2),
            "oldest_queued_seconds": recent["oldest_queued_seconds"],
            "master_worker_rid": str(master[0]["worker_rid"]) if master and master[0]["worker_rid"] else None,
        }

    # -- writing --------------------------------------------------------------------------------
    def cancel_job(self, rid: UUID) -> Job:
        rows = self._rows(self.store.jobs.cancel, (rid,))
        if not rows:
            raise JobNotFoundError(f"no queued, scheduled or running job with rid {rid}")
        return self.store.job_from_row(rows[0])

    def stop_worker(self, rid: UUID, graceful: bool) -> Worker:
        status = WorkerStatus.STOPPING if graceful else WorkerStatus.STOPPED
        rows = self._rows(self.store.workers.request_stop, (status.value, rid))
        return Worker.from_row(rows[0]) if rows else self.get_worker(rid)

    def readd(self, rid: UUID) -> Job:
        rows = self._rows(self.store.jobs.readd, (uuid7(), rid))
        if not rows:
            raise JobNotFoundError(f"no job with rid {rid} in job_archive")
        return self.store.job_from_row(rows[0])


__all__ = ["Admin", "ConfigurationError", "SchemaMissingError"]

"""What the dashboard's pages show, read on a small pool of its own (opened on the web server's
event loop, so a slow page never waits behind a worker). Every read is one statement of
``database.dashboard_table``, run unprepared: filters that are unset drop out of the plan."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from queuer.database.config import DatabaseConfiguration
from queuer.database.dashboard_table import DashboardTable
from queuer.database.encryption import PgpCodec
from queuer.database.pool import connection_kwargs
from queuer.model.job import utc_or_none

from .filters import JobFilter

# Tables up to this many pages are counted row by row; bigger ones from a sample of this many
# pages, so the overview costs the same on a thousand jobs and on millions.
SAMPLE_PAGES = 1000
STATEMENT_TIMEOUT_MS = 10_000


@dataclass
class Counts:
    """Jobs by status, queue and task in one table; ``estimated`` when read from a sample."""

    estimated: bool = False
    by_status: dict[str, int] = field(default_factory=dict)
    by_queue: dict[str, dict[str, int]] = field(default_factory=dict)  # queue -> status -> n
    by_task: dict[str, dict[str, int]] = field(default_factory=dict)  # task -> status -> n

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


@dataclass
class Minute:
    minutes_ago: int
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def total(self) -> int:
        return self.succeeded + self.failed + self.cancelled


@dataclass
class Page:
    """A page of a job list, newest first, with the cursors of the pages around it."""

    rows: list[dict[str, Any]]
    older: int | None  # the cursor of the next (older) page, None on the last
    newer: int | None  # the cursor of the previous (newer) page, None on the first


@dataclass
class Revealed:
    """A JSON value shown only when asked for: its text, or why it is not shown."""

    text: str | None
    note: str = ""


class Reads:
    """The dashboard's read-only statements on one database."""

    def __init__(self, config: DatabaseConfiguration, codec: PgpCodec | None, pool_size: int = 4) -> None:
        self.table = DashboardTable(config.schema)
        self._codec = codec
        self._config = config
        self._pool: AsyncConnectionPool[AsyncConnection[DictRow]] = AsyncConnectionPool(
            config.conninfo(),
            min_size=1,
            max_size=pool_size,
            kwargs={**connection_kwargs(config), "row_factory": dict_row},
            open=False,
            name="queuer-dashboard",
            connection_class=AsyncConnection[DictRow],
            configure=self._configure,
        )

    async def _configure(self, conn: AsyncConnection[DictRow]) -> None:
        if not self._config.behind_pooler:  # a page never holds a connection for long
            await conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")

    async def open(self) -> None:
        await self._pool.open(wait=True, timeout=30)

    async def close(self) -> None:
        await self._pool.close()

    async def rows(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, params, prepare=False)
            return [dict(r) for r in await cur.fetchall()] if cur.description else []

    # -- overview -------------------------------------------------------------------------------
    async def counts(self, ended: bool) -> Counts:
        name = self.table.qualified["job_archive" if ended else "job"]
        pages = (await self.rows(self.table.pages, {"table": name}))[0]["pages"]
        if pages <= SAMPLE_PAGES:
            found = await self.rows(self.table.counts_exact[ended], {"scale": 1})
            counts = Counts(estimated=False)
        else:
            percent = 100.0 * SAMPLE_PAGES / pages
            params = {"percent": percent, "scale": 100.0 / percent}
            found = await self.rows(self.table.counts_sampled[ended], params)
            counts = Counts(estimated=True)
        by_queue: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        by_task: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        by_status: dict[str, int] = defaultdict(int)
        for row in found:
            n = round(row["n"])
            by_status[row["status"]] += n
            by_queue[row["queue"]][row["status"]] += n
            by_task[row["task_name"]][row["status"]] += n
        counts.by_status = dict(by_status)
        counts.by_queue = {q: dict(v) for q, v in sorted(by_queue.items())}
        counts.by_task = {t: dict(v) for t, v in sorted(by_task.items())}
        return counts

    async def last_hour(self) -> list[Minute]:
        """Jobs archived per minute over the last hour by outcome, oldest minute first."""
        minutes = {m: Minute(m) for m in range(60)}
        for row in await self.rows(self.table.hour, {}):
            minute = minutes.get(row["minutes_ago"])
            if minute is not None and row["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                setattr(minute, row["status"].lower(), row["n"])
        return [minutes[m] for m in range(59, -1, -1)]

    async def oldest_queued_seconds(self) -> float | None:
        value: float | None = (await self.rows(self.table.oldest_queued, {}))[0]["seconds"]
        return value

    async def master(self) -> dict[str, Any]:
        row = (await self.rows(self.table.master, {}))[0]
        row["settings"] = row["settings"] or {}
        row["updated_at"] = utc_or_none(row["updated_at"])
        return row

    # -- lists ----------------------------------------------------------------------------------
    async def page(self, where: JobFilter, older: int | None, newer: int | None, entries: int) -> Page:
        """``entries`` rows older than ``older`` (or newer than ``newer``; neither: the newest)."""
        params = {**where.params(), "entries": entries + 1}
        if newer is not None:
            found = await self.rows(self.table.newer[where.ended], {**params, "cursor": newer})
            more_newer = len(found) > entries
            rows = list(reversed(found[:entries]))
            return Page(
                rows=rows,
                older=rows[-1]["id"] if rows else None,
                newer=rows[0]["id"] if rows and more_newer else None,
            )
        found = await self.rows(self.table.older[where.ended], {**params, "cursor": older})
        rows = found[:entries]
        return Page(
            rows=rows,
            older=rows[-1]["id"] if len(found) > entries else None,
            newer=rows[0]["id"] if rows and older is not None else None,
        )

    async def matching(self, where: JobFilter, cursor: int | None, entries: int) -> list[dict[str, Any]]:
        """(id, rid) of up to ``entries`` jobs matching ``where`` older than ``cursor``."""
        params = {**where.params(), "entries": entries, "cursor": cursor}
        return await self.rows(self.table.matching[where.ended], params)

    # -- one job --------------------------------------------------------------------------------
    async def job(self, rid: UUID) -> dict[str, Any] | None:
        """The whole row of a job (still encrypted where it was), with its progress, children,
        dependencies and workflow."""
        found = await self.rows(self.table.job, {"rid": rid})
        if not found:
            return None
        job = found[0]
        params = {"rid": rid}
        progress = await self.rows(self.table.progress, params)
        job["progress"] = progress[0] if progress else None
        job["children"] = await self.rows(self.table.children, params)
        job["dependencies"] = await self.rows(self.table.dependencies, params)
        workflow = await self.rows(self.table.workflow_of, params)
        job["workflow"] = None
        if workflow:
            members = await self.rows(self.table.members, {"workflow": workflow[0]["workflow_rid"]})
            job["workflow"] = {**workflow[0], "members": members}
        return job

    def reveal(self, job: dict[str, Any], column: str) -> Revealed:
        """A JSON column's text, decrypted from ``<column>_encrypted`` only with the key."""
        encrypted = job.get(f"{column}_encrypted")
        if encrypted:
            if self._codec is None:
                return Revealed(None, f"encrypted ({len(encrypted)} bytes); the dashboard has no key")
            try:
                return Revealed(_pretty(json.loads(self._codec.decrypt(bytes(encrypted)))))
            except Exception as exc:  # a wrong key, or a value another program wrote
                return Revealed(
                    None, f"encrypted; not readable with the dashboard's key ({type(exc).__name__})"
                )
        return Revealed(_pretty(job.get(column)))

    # -- workers --------------------------------------------------------------------------------
    async def workers(self, entries: int = 200) -> list[dict[str, Any]]:
        return await self.rows(self.table.workers, {"entries": entries})

    async def running_of(self, worker_rid: UUID) -> list[dict[str, Any]]:
        return await self.rows(self.table.running_of, {"worker": worker_rid})

    async def worker_digest(self) -> str:
        row = (await self.rows(self.table.worker_digest, {}))[0]
        return f"{row['n']}:{row['digest']}"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def ago(value: datetime | None, now: datetime) -> float | None:
    """Seconds from ``value`` (a naive UTC timestamp, as the tables hold) to ``now``."""
    aware = utc_or_none(value)
    return None if aware is None else (now - aware).total_seconds()

"""Workflows' database work as typed calls (SQL in ``workflow_table``; the transitions a worker's
finish makes are part of its cycle)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from typing import Any, NamedTuple
from uuid import UUID

from psycopg.rows import DictRow

from queuer.model import HELD_UNTIL, Job, JobNotFoundError, Progress, ValidationError, Workflow, result_value
from queuer.model.job import utc_or_none

from .job_table import JobTable, NewJob, json_row
from .workflow_table import WorkflowTable

Execute = Callable[[str, Any], Awaitable[list[DictRow]]]
# A write as steps: yields (statement, parameters), is sent each statement's rows as dicts.
Steps = Generator[tuple[str, Mapping[str, Any]], list[dict[str, Any]], Any]


class Links(NamedTuple):
    """A workflow's rows beside its jobs: members (position, stage, rid), who waits for whom
    (job, dependency, position) and how many each held job waits for."""

    workflow: UUID | None
    kind: str | None
    members: list[tuple[int, int, UUID]]
    dependencies: list[tuple[UUID, UUID, int]]
    waits: list[tuple[UUID, int]]


class WorkflowStore:
    """Write workflows and dependent jobs, read workflows back, move them on where a worker's
    cycle could not (the master's sweep)."""

    def __init__(
        self,
        table: WorkflowTable,
        jobs: JobTable,
        execute: Execute,
        job_from_row: Callable[[Mapping[str, Any]], Job],
        decrypt: Callable[[bytes], str] | None,
    ) -> None:
        self._table = table
        self._jobs = jobs
        self._execute = execute
        self._job_from_row = job_from_row
        self._decrypt = decrypt

    def write_steps(self, news: Sequence[NewJob], links: Links) -> Steps:
        """Every job of a workflow in one statement, then its links in one more."""
        yield self._jobs.insert_rows, {"rows": json.dumps([json_row(n) for n in news])}
        yield self._table.insert_links, _links_params(links)

    def dependent_steps(self, new: NewJob, insert: str) -> Steps:
        """One job that waits for the jobs it names (``depends_on``): refused when one of them is
        unknown; held until all succeeded; archived CANCELLED at once if one already failed."""
        rids = [str(r) for r in new.depends_on]
        found = {r["rid"]: r for r in (yield self._table.where_are, {"rids": rids})}
        missing = [r for r in new.depends_on if r not in found]
        if missing:
            raise ValidationError(f"depends_on names no job: {', '.join(map(str, missing))}")
        remaining = sum(
            1 for r in new.depends_on if not (found[r]["ended"] and found[r]["status"] == "SUCCEEDED")
        )
        if remaining:
            new = new._replace(status="SCHEDULED", scheduled_at=HELD_UNTIL)
        rows = yield insert, new._asdict()
        links = Links(
            None,
            None,
            [],
            [(new.rid, dep, position) for position, dep in enumerate(new.depends_on)],
            [(new.rid, remaining)] if remaining else [],
        )
        yield self._table.insert_links, _links_params(links)
        live = [str(r) for r in new.depends_on if not found[r]["ended"]]
        if live:
            yield self._table.mark_dependents, {"rids": live}
        if any(found[r]["ended"] and found[r]["status"] != "SUCCEEDED" for r in new.depends_on):
            yield self._table.sweep, {}
        return rows

    async def sweep(self) -> tuple[int, int]:
        """Release held jobs whose dependencies all succeeded, cancel those with one that did
        not: (released, cancelled)."""
        rows = await self._execute(self._table.sweep, {})
        return (rows[0]["released"], rows[0]["cancelled"]) if rows else (0, 0)

    async def forget(self) -> None:
        """Drop the links and progress of jobs that are no longer held or have ended."""
        await self._execute(self._table.forget, {})
        await self._execute(self._table.forget_progress, {})

    async def write_progress(self, rid: UUID, fraction: float, message: str) -> None:
        await self._execute(
            self._table.write_progress, {"rid": rid, "fraction": fraction, "message": message}
        )

    async def progress_of(self, job: Job) -> Job:
        """The job with the progress its task last reported, if any."""
        rows = await self._execute(self._table.read_progress, {"rid": job.rid})
        if rows:
            job.progress = Progress(
                rows[0]["fraction"], rows[0]["message"], utc_or_none(rows[0]["updated_at"])
            )
        return job

    async def results_for(self, rid: UUID) -> list[Any]:
        """The results of the jobs ``rid`` waited for, each as its task's return value, in order."""
        values = []
        for row in await self._execute(self._table.results, {"rid": rid}):
            data = row["results_encrypted"]
            if data and self._decrypt is not None:
                values.append(result_value(json.loads(self._decrypt(bytes(data)))))
            else:
                values.append(result_value(row["results"]))
        return values

    async def get(self, rid: UUID) -> Workflow:
        kinds = await self._execute(self._table.kind, {"rid": rid})
        if not kinds:
            raise JobNotFoundError(f"Workflow not found: no chain or group with rid {rid}")
        rows = await self._execute(self._table.members, {"rid": rid})
        members = []
        for row in rows:
            values = dict(row)
            values.pop("position")
            values.pop("stage")
            members.append(self._job_from_row(values))
        return Workflow(rid=rid, kind=kinds[0]["kind"], members=members)


def _links_params(links: Links) -> dict[str, Any]:
    return {
        "workflow": links.workflow,
        "kind": links.kind,
        "members": json.dumps([{"position": p, "stage": s, "rid": str(r)} for p, s, r in links.members]),
        "dependencies": json.dumps(
            [{"job_rid": str(j), "depends_on": str(d), "position": p} for j, d, p in links.dependencies]
        ),
        "waits": json.dumps([{"job_rid": str(j), "remaining": n} for j, n in links.waits]),
    }

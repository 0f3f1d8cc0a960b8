"""Turning ``add_job`` calls and batch items into rows to insert: validation, encoding, names.

Everything here happens before any I/O except the check that a task name not registered in this
process is registered by some worker in the database (one query the first time a name is used).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg

from queuer.database import NewJob
from queuer.database.store import Store
from queuer.database.workflow_store import Links
from queuer.model import (
    HELD_UNTIL,
    BatchJob,
    FlowLink,
    JobStatus,
    OnError,
    Options,
    PassResults,
    Step,
    UnknownTaskError,
    ValidationError,
    uuid7,
    uuid7_batch,
)
from queuer.model.jsoncodec import dumps, naive_utc
from queuer.model.queues import DEFAULT_QUEUE

from . import tracing
from .runner import current_job_rid
from .tasks import TaskRef, TaskRegistry


class JobBuilder:
    """Validates and encodes the jobs of one client, and remembers which task names the database
    knows."""

    def __init__(self, registry: TaskRegistry, store: Store, default_on_error: OnError | None) -> None:
        self.registry = registry
        self.store = store
        self.default_on_error = default_on_error
        self.default_options_json = dumps(Options(on_error=default_on_error).to_json(), "options")
        self.known_remote_tasks: set[str] = set()
        self.known_remote_intervals: set[str] = set()

    # A task (or next-interval function) is known when this process or any worker row in the
    # database lists it. Names found in the database are remembered: the check costs a query only
    # the first time a name is used.
    def _missing(self, news: Sequence[NewJob]) -> tuple[list[str], list[str]]:
        tasks = {n.task_name for n in news} - self.registry.tasks.keys() - self.known_remote_tasks
        intervals = {n.next_interval for n in news if n.next_interval}
        intervals -= self.registry.next_intervals.keys() | self.known_remote_intervals
        return sorted(tasks), sorted(i for i in intervals if i)

    def check_names(self, cur: psycopg.Cursor[Any], news: Sequence[NewJob]) -> None:
        tasks, intervals = self._missing(news)
        if tasks or intervals:
            self._note_known(tasks, intervals, self.store.unknown_names_on(cur, tasks, intervals))

    async def check_names_async(self, cur: psycopg.AsyncCursor[Any], news: Sequence[NewJob]) -> None:
        tasks, intervals = self._missing(news)
        if tasks or intervals:
            self._note_known(tasks, intervals, await self.store.unknown_names_on_async(cur, tasks, intervals))

    def _note_known(self, tasks: list[str], intervals: list[str], unknown: list[tuple[str, str]]) -> None:
        if unknown:
            kind, name = unknown[0]
            what = "task" if kind == "task" else "next-interval function"
            how = "add_task" if kind == "task" else "add_next_interval_func"
            raise UnknownTaskError(
                f"no worker has registered a {what} named {name!r}; register it with {how}"
            )
        self.known_remote_tasks.update(tasks)
        self.known_remote_intervals.update(intervals)

    def batch(self, batch: Sequence[BatchJob]) -> list[NewJob]:
        """Validate and encode a whole batch; per-batch work (rids, parent, names) is done once."""
        if isinstance(batch, str | bytes) or not isinstance(batch, Sequence):
            raise ValidationError("add_jobs takes a list of BatchJob")
        rids = uuid7_batch(len(batch))
        parent = current_job_rid.get()
        # The common item (no options, no keyword parameters, not inside a task, no parameter
        # encryption) is built inline: the general path is much slower per item.
        carrier = tracing.sent("batch", "", count=len(batch)) if tracing.active else None
        plain = parent is None and not self.store.encrypt_parameters and carrier is None
        default_options = self.default_options_json
        queued = JobStatus.QUEUED.value
        names: dict[Any, str] = {}
        tasks = self.registry.tasks
        news = []
        for index, item in enumerate(batch):
            try:
                if not isinstance(item, BatchJob):
                    raise ValidationError(f"{type(item).__name__} is not a BatchJob")
                params, keyed = item.parameters, item.parameters_keyed
                if type(params) is not list and type(params) is not tuple:
                    if isinstance(params, str | bytes | Mapping) or not isinstance(params, Sequence):
                        raise ValidationError("parameters must be a list or tuple")
                    params = list(params)
                if type(keyed) is not dict:
                    if not isinstance(keyed, Mapping):
                        raise ValidationError("parameters_keyed must be a dict")
                    keyed = dict(keyed)
                try:
                    name = names[item.task]
                except (KeyError, TypeError):
                    name = names[item.task] = self.registry.name_of(item.task)
                local = tasks.get(name)
                if local is not None:
                    local.check_call(params, keyed)
                if plain and item.options is None and not keyed:
                    params_json = dumps(params, "parameters")
                    news.append(NewJob(rids[index], default_options, name, params_json, "{}", queued, None))
                else:
                    options = _traced(item.options, carrier) if carrier else item.options
                    new = self.encode(options, name, params, keyed, rids[index], parent)
                    if new.depends_on:
                        raise ValidationError("add_jobs takes no depends_on: add such jobs with add_job")
                    news.append(new)
            except ValidationError as exc:
                raise type(exc)(f"batch item {index}: {exc}") from exc
        return news

    def workflow(self, stages: list[list[Step]], kind: str) -> tuple[list[NewJob], Links]:
        """The jobs and links of a workflow whose stages run one after the other: every job of a
        stage waits for every job of the stage before it (held until then) and receives its
        result (a list of results after a group) first, unless its step says not to."""
        rid = uuid7()
        parent = current_job_rid.get()
        carrier = tracing.sent(kind, "", rid) if tracing.active else None
        news: list[NewJob] = []
        links = Links(rid, kind, [], [], [])
        before: list[UUID] = []
        for number, stage in enumerate(stages):
            current: list[UUID] = []
            last = number == len(stages) - 1
            for step in stage:
                try:
                    new = self._step(step, number, before, rid, last, parent, carrier)
                except ValidationError as exc:
                    raise type(exc)(f"{kind} step {len(news)}: {exc}") from exc
                if before:
                    new = new._replace(status=JobStatus.SCHEDULED.value, scheduled_at=HELD_UNTIL)
                    links.dependencies.extend((new.rid, dep, pos) for pos, dep in enumerate(before))
                    links.waits.append((new.rid, len(before)))
                links.members.append((len(news), number, new.rid))
                news.append(new)
                current.append(new.rid)
            before = current
        return news, links

    def _step(
        self,
        step: Step,
        number: int,
        before: list[UUID],
        workflow: UUID,
        last: bool,
        parent: UUID | None,
        carrier: dict[str, str] | None,
    ) -> NewJob:
        options = step.options or Options()
        if not isinstance(options, Options):
            raise ValidationError(f"options must be an Options, got {type(options).__name__}")
        if carrier:
            options = replace(options, trace=carrier)
        if options.schedule is not None or options.unique_key is not None or options.depends_on:
            raise ValidationError("a workflow step takes no schedule, unique_key or depends_on")
        passing = None
        if before and step.pass_result:
            passing = PassResults.PREVIOUS if len(before) == 1 else PassResults.ALL
        flow = FlowLink(workflow=workflow, dependents=not last, pass_results=passing)
        name = self.registry.name_of(step.task)
        local = self.registry.tasks.get(name)
        if local is not None:  # the result it will receive counts as its first argument
            local.check_call([None, *step.args] if passing else list(step.args), step.kwargs)
        return self.encode(replace(options, flow=flow), name, step.args, step.kwargs, uuid7(), parent)

    def one(
        self, options: Options | None, task: TaskRef, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> NewJob:
        """Validate and encode one job without I/O; every problem raises here, before any write."""
        name = self.registry.name_of(task)
        local = self.registry.tasks.get(name)
        if local is not None:
            local.check_call(args, kwargs)
        rid = uuid7()
        if tracing.active:
            options = _traced(options, tracing.sent(name, _queue_of(options), rid))
        return self.encode(options, name, args, kwargs, rid, current_job_rid.get())

    def encode(
        self,
        options: Options | None,
        name: str,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        rid: UUID,
        parent: UUID | None,
    ) -> NewJob:
        schedule = None
        unique_key = None
        depends_on: tuple[UUID, ...] = ()
        if options is None and parent is None:
            options_json = self.default_options_json
        else:
            if options is not None and not isinstance(options, Options):
                raise ValidationError(f"options must be an Options, got {type(options).__name__}")
            opts = (options or Options()).with_defaults(self.default_on_error, parent)
            opts.check_new(datetime.now(UTC))
            schedule = opts.schedule
            unique_key = opts.unique_key
            depends_on = opts.depends_on
            if depends_on and (schedule is not None or unique_key is not None):
                raise ValidationError("a job with depends_on takes no schedule and no unique_key")
            options_json = dumps(opts.to_json(), "options")
        if kwargs and any(type(k) is not str for k in kwargs):
            raise ValidationError("keyword parameter names must be strings")
        new = NewJob(
            rid=rid,
            options_json=options_json,
            task_name=name,
            parameters_json=dumps(args, "parameters"),
            parameters_keyed_json=dumps(kwargs, "keyword parameters"),
            status=JobStatus.SCHEDULED.value if schedule else JobStatus.QUEUED.value,
            scheduled_at=naive_utc(schedule.start) if schedule else None,
            next_interval=schedule.next_interval if schedule else None,
            unique_key=unique_key,
            depends_on=depends_on,
        )
        return self.store.seal(new)


def _traced(options: Options | None, carrier: dict[str, str] | None) -> Options | None:
    """``options`` carrying the trace context of their enqueue (checked as any options are)."""
    if not carrier:
        return options
    if options is not None and not isinstance(options, Options):
        return options  # encode() refuses it with the usual message
    return replace(options or Options(), trace=carrier)


def _queue_of(options: Options | None) -> str:
    return options.queue if isinstance(options, Options) else DEFAULT_QUEUE

"""Turning ``add_job`` calls and batch items into rows to insert: validation, encoding, names.

Everything here happens before any I/O except the check that a task name not registered in this
process is registered by some worker in the database (one query the first time a name is used).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg

from queuer.database import NewJob
from queuer.database.store import Store
from queuer.model import (
    BatchJob,
    JobStatus,
    OnError,
    Options,
    UnknownTaskError,
    ValidationError,
    uuid7,
    uuid7_batch,
)
from queuer.model.jsoncodec import dumps, naive_utc

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
        plain = parent is None and not self.store.encrypt_parameters
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
                    news.append(self.encode(item.options, name, params, keyed, rids[index], parent))
            except ValidationError as exc:
                raise type(exc)(f"batch item {index}: {exc}") from exc
        return news

    def one(
        self, options: Options | None, task: TaskRef, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> NewJob:
        """Validate and encode one job without I/O; every problem raises here, before any write."""
        name = self.registry.name_of(task)
        local = self.registry.tasks.get(name)
        if local is not None:
            local.check_call(args, kwargs)
        return self.encode(options, name, args, kwargs, uuid7(), current_job_rid.get())

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
        if options is None and parent is None:
            options_json = self.default_options_json
        else:
            if options is not None and not isinstance(options, Options):
                raise ValidationError(f"options must be an Options, got {type(options).__name__}")
            opts = (options or Options()).with_defaults(self.default_on_error, parent)
            opts.check_new(datetime.now(UTC))
            schedule = opts.schedule
            unique_key = opts.unique_key
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
        )
        return self.store.seal(new)

"""Lifecycle callbacks of a worker: events of the jobs it runs (``q.on("job.failed", fn)``, per task
``on_success``/``on_failure``) and its own start and stop (``on_startup``, ``on_shutdown``).

Job callbacks run in the process that runs the job, after the fact: an async one as a task on the
worker's loop, a plain one in a thread. One that raises is logged and changes nothing."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from queuer.model import Job, ValidationError

log = logging.getLogger("queuer.hooks")

EVENTS = ("job.started", "job.succeeded", "job.failed", "job.retrying", "job.cancelled", "job.expired")
Callback = Callable[..., Any]


def check_callable(fn: Any, what: str) -> Callback:
    if not callable(fn):
        raise ValidationError(f"{what} must be callable, got {type(fn).__name__}")
    checked: Callback = fn
    return checked


async def _call(fn: Callback, *args: Any) -> None:
    """Call ``fn`` (sync in a thread, async on the loop) and wait for it."""
    if inspect.iscoroutinefunction(fn):
        await fn(*args)
        return
    result = await asyncio.get_running_loop().run_in_executor(None, fn, *args)
    if inspect.isawaitable(result):
        await result


class Hooks:
    """The callbacks registered on one worker."""

    def __init__(self) -> None:
        self._events: dict[str, list[Callback]] = defaultdict(list)
        self._tasks: dict[tuple[str, str], list[Callback]] = defaultdict(list)
        self.startup: list[Callback] = []
        self.shutdown: list[Callback] = []
        self._running: set[asyncio.Task[None]] = set()
        self.active = False  # some job callback is registered (the runtime skips the rest if not)

    def on(self, event: str, fn: Callback) -> Callback:
        if event not in EVENTS:
            raise ValidationError(f"unknown event {event!r}; one of {', '.join(EVENTS)}")
        self._events[event].append(check_callable(fn, f"the callback for {event}"))
        self.active = True
        return fn

    def for_task(self, task: str, on_success: Callback | None, on_failure: Callback | None) -> None:
        for event, fn in (("job.succeeded", on_success), ("job.failed", on_failure)):
            if fn is not None:
                self._tasks[(task, event)].append(check_callable(fn, f"{task}'s {event} callback"))
                self.active = True

    def check(self, on_success: Any, on_failure: Any) -> None:
        """Refuse a task's callbacks before the task is registered."""
        for what, fn in (("on_success", on_success), ("on_failure", on_failure)):
            if fn is not None:
                check_callable(fn, what)

    def wants(self, event: str, task: str) -> bool:
        return bool(self._events.get(event) or self._tasks.get((task, event)))

    def fire(self, event: str, job: Job) -> None:
        """Start the callbacks of ``event`` for ``job`` (on the worker's loop); do not wait."""
        for fn in [*self._events.get(event, ()), *self._tasks.get((job.task_name, event), ())]:
            task = asyncio.get_running_loop().create_task(self._guarded(event, fn, job))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _guarded(self, event: str, fn: Callback, job: Job) -> None:
        try:
            await _call(fn, job)
        except Exception:
            log.exception("callback %r for %s of job %s raised; the job is unchanged", fn, event, job.rid)

    async def settle(self, timeout: float) -> None:
        """Let callbacks still running finish (at stop), for up to ``timeout`` seconds."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=timeout)

    async def run_startup(self) -> None:
        """Each startup hook in order; the first that raises stops the start (it propagates)."""
        for fn in self.startup:
            await _call(fn)

    async def run_shutdown(self) -> None:
        """Every shutdown hook, in order, whatever the others do."""
        for fn in self.shutdown:
            try:
                await _call(fn)
            except Exception:
                log.exception("shutdown hook %r raised", fn)

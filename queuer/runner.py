"""Runs one claimed job: arguments coerced, timeout applied, outcome recorded (DESIGN §4.4)."""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import multiprocessing
import multiprocessing.forkserver
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from typing import Any
from uuid import UUID

from queuer.model import Job, JobStatus, NotSerializableError, OnError, may_run_again, results_of
from queuer.model.jsoncodec import dumps

from . import tracing
from .tasks import Task

# The rid of the job whose task is running in this context; add_job records it as parent_rid.
current_job_rid: contextvars.ContextVar[UUID | None] = contextvars.ContextVar("queuer_job_rid", default=None)


@dataclass
class Outcome:
    """How a run ended. ``retry_at`` set means: back to the queue (same row and rid) at that time."""

    job: Job
    status: JobStatus
    results_json: str = "[]"
    error: str = ""
    retry_at: datetime | None = None


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _run_in_thread(
    loop: asyncio.AbstractEventLoop,
    ctx: contextvars.Context,
    task: Task[..., Any],
    args: list[Any],
    kwargs: dict[str, Any],
) -> asyncio.Future[Any]:
    """Start a plain function in a daemon thread of its own; a timed-out thread is abandoned."""
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)

    def target() -> None:
        try:
            result = ctx.run(task.fn, *args, **kwargs)
        except BaseException as exc:  # the task's failure is the job's failure, whatever it is
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=target, name=f"queuer-task-{task.name}", daemon=True).start()
    return future


class ProcessTaskError(Exception):
    """The task failed in its process; the text is already ``"Type: message"``."""


# Set in the environment of the fork server that starts process=True tasks, and so of every task
# process: importing the task's module there may build a Queuer, which must not become a worker.
TASK_PROCESS_ENV = "QUEUER_TASK_PROCESS"
_task_process = False
_fork_server_lock = threading.Lock()


def in_task_process() -> bool:
    """True in the fork server and the processes of ``process=True`` tasks."""
    return _task_process or os.environ.get(TASK_PROCESS_ENV) == "1"


def _task_context() -> Any:
    """The forkserver context, its server started with ``TASK_PROCESS_ENV`` set (the server
    imports the main module once, and every task process inherits its environment)."""
    ctx = multiprocessing.get_context("forkserver")
    with _fork_server_lock:
        previous = os.environ.get(TASK_PROCESS_ENV)
        os.environ[TASK_PROCESS_ENV] = "1"
        try:
            multiprocessing.forkserver.ensure_running()
        finally:
            if previous is None:
                os.environ.pop(TASK_PROCESS_ENV, None)
            else:
                os.environ[TASK_PROCESS_ENV] = previous
    return ctx


def _reference(fn: Any) -> Any:
    """``fn`` as (module, qualified name) when it can be found again by import, else ``fn``: the
    module is then imported in the task process after it knows what it is, and a decorated
    function (now a ``Task`` in its module) is found through its wrapper."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not isinstance(module, str) or not qualname or "<" in qualname:
        return fn
    return (module, qualname)


def _resolve(ref: Any) -> Any:
    if not isinstance(ref, tuple):
        return ref
    module, qualname = ref
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target.fn if isinstance(target, Task) else target


def _process_main(send: Connection, ref: Any, args: list[Any], kwargs: dict[str, Any]) -> None:
    global _task_process
    _task_process = True
    os.environ.pop(TASK_PROCESS_ENV, None)  # not inherited by what the task itself starts
    try:
        result = _resolve(ref)(*args, **kwargs)
    except BaseException as exc:  # reported to the parent as the job's error
        send.send((False, _error_text(exc)))
    else:
        send.send((True, result))


async def _run_in_process(task: Task[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Run a plain function in a process of its own; on timeout or cancellation it is killed.

    The forkserver start method is safe in a threaded parent; the function, its arguments and its
    result must be picklable (a module-level function).
    """
    loop = asyncio.get_running_loop()
    ctx = await loop.run_in_executor(None, _task_context)
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_process_main, args=(send, _reference(task.fn), args, kwargs), daemon=True)
    await loop.run_in_executor(None, proc.start)
    send.close()
    done: asyncio.Future[tuple[bool, Any]] = loop.create_future()

    def readable() -> None:
        loop.remove_reader(recv.fileno())
        if done.done():
            return
        try:
            done.set_result(recv.recv())
        except (EOFError, OSError):
            done.set_exception(ProcessTaskError(f"ProcessDied: exit code {proc.exitcode}"))

    loop.add_reader(recv.fileno(), readable)
    try:
        ok, value = await done
    finally:
        loop.remove_reader(recv.fileno())
        if proc.is_alive():
            proc.kill()
        await loop.run_in_executor(None, proc.join, 10)
        recv.close()
    if not ok:
        raise ProcessTaskError(value)
    return value


async def run_job(task: Task[..., Any], job: Job, on_error: OnError | None) -> Outcome:
    """Execute ``task`` for ``job`` once and decide: SUCCEEDED, FAILED, or retry later."""
    if tracing.active:
        with tracing.processing(job) as span:
            outcome = await _run_job(task, job, on_error)
            tracing.outcome(span, outcome.status, outcome.error)
            return outcome
    return await _run_job(task, job, on_error)


async def _run_job(task: Task[..., Any], job: Job, on_error: OnError | None) -> Outcome:
    current_job_rid.set(job.rid)
    timeout = on_error.timeout if on_error and on_error.timeout > 0 else None
    try:
        if job.parameters or job.parameters_keyed:
            args, kwargs = task.coerce(job.parameters, job.parameters_keyed)
        else:
            args, kwargs = [], {}
        if task.is_async:
            value = await asyncio.wait_for(task.fn(*args, **kwargs), timeout)
        elif task.in_process:
            value = await asyncio.wait_for(_run_in_process(task, args, kwargs), timeout)
        else:
            ctx = contextvars.copy_context()
            fut = _run_in_thread(asyncio.get_running_loop(), ctx, task, args, kwargs)
            value = await asyncio.wait_for(fut, timeout)
        if value is None:  # most tasks return nothing: results [] without the encoder
            return Outcome(job, JobStatus.SUCCEEDED)
        return Outcome(job, JobStatus.SUCCEEDED, results_json=dumps(results_of(value), "task result"))
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        error = f"TaskTimeoutError: task {task.name!r} exceeded its timeout of {timeout}s"
    except (NotSerializableError, ProcessTaskError) as exc:
        error = str(exc)
    except Exception as exc:
        error = _error_text(exc)
    return failure(job, error, on_error)


def failure(job: Job, error: str, on_error: OnError | None) -> Outcome:
    """FAILED, or a retry on the same row when the policy has retries left (``attempts`` counts runs)."""
    if on_error is not None and may_run_again(on_error, job.attempts):
        delay = on_error.delay_before_retry(job.attempts)
        retry_at = datetime.now(UTC) + timedelta(seconds=delay)
        return Outcome(job, JobStatus.QUEUED, error=error, retry_at=retry_at)
    return Outcome(job, JobStatus.FAILED, results_json="null", error=error)

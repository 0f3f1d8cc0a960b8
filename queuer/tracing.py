"""OpenTelemetry spans for enqueue and run (``pip install "queuer[otel]"``), with the trace
carried from the producer to the worker inside the job, so a job's run is a child of the request
that enqueued it, whichever process (and machine) runs it.

Off until ``queuer.tracing.instrument()`` (the OpenTelemetry instrumentation convention), so a
process that does not trace pays one flag test per job. The carrier is the W3C trace context
(whatever propagators the application configured), stored under ``options.metadata.queuer_py``
where Go workers keep it and ignore it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from queuer.model import Job, JobStatus, QueuerError

active = False  # set by instrument(); read on the hot path, so a plain module flag
_tracer: Any = None
SYSTEM = "queuer"


def instrument(tracer_provider: Any = None) -> None:
    """Trace every enqueue and run of this process from now on (``tracer_provider``: the
    application's, else the global one)."""
    global active, _tracer
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise QueuerError('tracing needs OpenTelemetry: pip install "queuer[otel]"') from exc
    from queuer import __version__

    _tracer = trace.get_tracer("queuer", __version__, tracer_provider=tracer_provider)
    active = True


def uninstrument() -> None:
    global active, _tracer
    active, _tracer = False, None


def sent(task: str, queue: str, rid: Any = None, count: int = 1) -> dict[str, str] | None:
    """A PRODUCER span for jobs being enqueued (ended at once: the job is on its way), and the
    carrier of its context to store in the job; None when not tracing."""
    if not active or _tracer is None:
        return None
    from opentelemetry import propagate, trace

    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send",
        "messaging.destination.name": queue,
        "queuer.task": task,
    }
    if count > 1:
        attributes["messaging.batch.message_count"] = count
    elif rid is not None:
        attributes["messaging.message.id"] = str(rid)
    carrier: dict[str, str] = {}
    with _tracer.start_as_current_span(f"send {task}", kind=trace.SpanKind.PRODUCER, attributes=attributes):
        propagate.inject(carrier)
    return carrier or None


@contextmanager
def processing(job: Job) -> Iterator[Any]:
    """A CONSUMER span around one run of ``job``, a child of the span that enqueued it."""
    from opentelemetry import propagate, trace

    assert _tracer is not None
    carrier = job.options.trace if job.options is not None else None
    parent = propagate.extract(carrier) if carrier else None
    attributes = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "process",
        "messaging.destination.name": job.queue,
        "messaging.message.id": str(job.rid),
        "queuer.task": job.task_name,
        "queuer.attempt": job.attempts,
    }
    with _tracer.start_as_current_span(
        f"process {job.task_name}", context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes
    ) as span:
        yield span


def outcome(span: Any, status: JobStatus, error: str) -> None:
    """Mark the run's span with how it ended (a retry is an error of this attempt)."""
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("queuer.status", status.value)
    if status is JobStatus.SUCCEEDED:
        span.set_status(Status(StatusCode.OK))
    else:
        span.set_status(Status(StatusCode.ERROR, error[:500]))

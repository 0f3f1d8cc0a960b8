"""OpenTelemetry: a span for the enqueue and one for the run, the run a child of the enqueue
through the trace context stored in the job, also across processes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from queuer import Step, tracing

from .helpers import FAST_MASTER, QueuerFactory, run_python

sdk_trace = pytest.importorskip(
    "opentelemetry.sdk.trace", reason="opentelemetry-sdk is not installed (test extra)"
)
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.instrument(provider)
    yield exporter
    tracing.uninstrument()


def _named(exporter: InMemorySpanExporter, name: str) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def test_a_run_is_a_child_of_the_enqueue_that_made_it(
    spans: InMemorySpanExporter, make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    q = make_queuer("traced", 2)

    def fine(x: int) -> int:
        return x

    def broken() -> None:
        raise ValueError("no")

    q.add_task(fine)
    q.add_task(broken)
    q.start(FAST_MASTER)
    good = q.add_job(fine, 1)
    bad = q.add_job(broken)
    q.wait_for_job_finished(good.rid, 30)
    q.wait_for_job_finished(bad.rid, 30)

    (send,) = [s for s in _named(spans, "send fine") if s.attributes["messaging.message.id"] == str(good.rid)]
    (run,) = _named(spans, "process fine")
    assert send.kind is SpanKind.PRODUCER and run.kind is SpanKind.CONSUMER
    assert run.context.trace_id == send.context.trace_id
    assert run.parent is not None and run.parent.span_id == send.context.span_id
    assert run.attributes["messaging.message.id"] == str(good.rid)
    assert run.status.status_code is StatusCode.OK
    (failed,) = _named(spans, "process broken")
    assert failed.status.status_code is StatusCode.ERROR and "ValueError" in (failed.status.description or "")

    stored = sql.execute("SELECT options FROM job_archive WHERE rid = %s", (good.rid,)).fetchone()
    assert stored is not None
    traceparent = stored[0]["metadata"]["queuer_py"]["trace"]["traceparent"]
    assert traceparent.split("-")[1] == format(send.context.trace_id, "032x")


def test_the_trace_crosses_processes_and_workflows(
    spans: InMemorySpanExporter, make_queuer: QueuerFactory, database_url: str
) -> None:
    q = make_queuer("traced-far", 2)

    def step(*values: Any) -> int:
        return len(values)

    q.add_task_with_name(step, "step")
    q.start(FAST_MASTER)
    chain = q.add_chain([Step("step"), Step("step")])
    q.wait_for_workflow(chain.rid, 30)
    (send,) = _named(spans, "send chain")
    runs = _named(spans, "process step")
    assert len(runs) == 2 and all(r.parent.span_id == send.context.span_id for r in runs)

    # Another process enqueues with its own trace: the run here continues that trace.
    script = (
        "import json\nimport queuer, queuer.tracing\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "provider = TracerProvider()\n"
        "queuer.tracing.instrument(provider)\n"
        "c = queuer.connect()\n"
        "job = c.add_job('step', 1)\n"
        "print(json.dumps({'rid': str(job.rid), 'trace': job.options.trace}))\n"
        "c.close()\n"
    )
    enqueued = run_python(database_url, "-c", script)
    assert enqueued.returncode == 0, enqueued.stderr
    sent = json.loads(enqueued.stdout.strip().splitlines()[-1])
    q.wait_for_job_finished(sent["rid"], 30)
    (far,) = [s for s in _named(spans, "process step") if s.attributes["messaging.message.id"] == sent["rid"]]
    assert format(far.context.trace_id, "032x") == sent["trace"]["traceparent"].split("-")[1]


def test_nothing_is_traced_or_stored_until_instrumented(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    assert not tracing.active
    q = make_queuer("untraced", 1)

    def fine() -> None: ...

    q.add_task(fine)
    job = q.add_job(fine)
    assert sql.execute("SELECT options FROM job WHERE rid = %s", (job.rid,)).fetchone() == ({},)

"""Prometheus metrics of a worker (``pip install "queuer[metrics]"``): what it started and
finished and how long runs took, counted as they happen, and on each scrape the queue's state
read from the database (jobs by state and queue, the oldest queued job's age, workers alive, the
master). Served on its own port: ``q.serve_metrics(9100)`` or ``queuer worker --metrics-port``."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from queuer.model import Job, QueuerError, WorkerStatus

if TYPE_CHECKING:
    from .client import Client

log = logging.getLogger("queuer.metrics")


def prometheus() -> Any:
    """The prometheus_client module, or a QueuerError naming the extra that brings it."""
    try:
        import prometheus_client
    except ImportError as exc:
        raise QueuerError('metrics need prometheus_client: pip install "queuer[metrics]"') from exc
    return prometheus_client


class WorkerMetrics:
    """The counters a worker keeps, and the collector that reads the database on a scrape."""

    def __init__(self, client: Client) -> None:
        prom = prometheus()
        self.registry = prom.CollectorRegistry()
        self._started = prom.Counter(
            "queuer_jobs_started", "Jobs this worker started", ["task", "queue"], registry=self.registry
        )
        self._finished = prom.Counter(
            "queuer_jobs_finished",
            "Jobs this worker finished (SUCCEEDED, FAILED, CANCELLED; retrying: put back)",
            ["task", "queue", "status"],
            registry=self.registry,
        )
        self._run_time = prom.Histogram(
            "queuer_job_run_seconds", "How long runs of a task took", ["task"], registry=self.registry
        )
        self._starts: dict[int, float] = {}
        self.registry.register(_DatabaseCollector(client))

    def started(self, job: Job) -> None:
        self._starts[job.id] = time.monotonic()
        self._started.labels(job.task_name, job.queue).inc()

    def finished(self, job: Job, status: str) -> None:
        began = self._starts.pop(job.id, None)
        if began is not None:
            self._run_time.labels(job.task_name).observe(time.monotonic() - began)
        self._finished.labels(job.task_name, job.queue, status).inc()

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` on ``host:port`` (loopback unless told otherwise) in a thread."""
        prometheus().start_http_server(port, addr=host, registry=self.registry)


class _DatabaseCollector:
    """Read at each scrape, so nothing is spent while nobody scrapes."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def describe(self) -> list[Any]:
        return []  # read at collection: no describe-time query

    def collect(self) -> Iterator[Any]:
        prometheus()
        from prometheus_client.core import GaugeMetricFamily

        jobs = GaugeMetricFamily("queuer_jobs", "Jobs in job by state and queue", labels=["state", "queue"])
        oldest = GaugeMetricFamily(
            "queuer_oldest_queued_seconds", "Age of the oldest queued job, per queue", labels=["queue"]
        )
        workers = GaugeMetricFamily("queuer_workers_alive", "Worker rows RUNNING (Python and Go)")
        master = GaugeMetricFamily("queuer_master_present", "1 while a worker holds the master role")
        try:
            for queue in self._client.get_queues():
                for state, value in (
                    ("queued", queue.queued),
                    ("scheduled", queue.scheduled),
                    ("running", queue.running),
                ):
                    jobs.add_metric([state, queue.name], value)
                if queue.oldest_queued_seconds is not None:
                    oldest.add_metric([queue.name], queue.oldest_queued_seconds)
            workers.add_metric([], len(self._client.get_workers(0, 10_000, status=WorkerStatus.RUNNING)))
            master.add_metric([], 1 if self._client.get_master().worker_id else 0)
        except Exception as exc:  # a scrape must answer; the error is in the log
            log.warning("metrics: reading the database failed: %s", exc)
        yield from (jobs, oldest, workers, master)

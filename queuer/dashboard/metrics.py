"""``/metrics`` of the dashboard, for the whole fleet (Python and Go workers alike): read from the
tables at each scrape, so nothing is spent while nobody scrapes and no worker has to take part.

Gauges are the state now (jobs by state and queue, estimated on big tables as the overview is;
the oldest queued job's age per queue; workers alive; the master). Counters and the run-time
histogram add up what the tables' timestamps say happened since the previous scrape, from the
dashboard's start on: jobs enqueued (``created_at``), started (``started_at``) and finished
(``updated_at`` in the archive, with ``started_at`` the run time).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from queuer.metrics import prometheus

from .state import Dashboard

# Rows committed a little after their timestamp still fall into the window they belong to.
LAG = timedelta(seconds=2)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0, 300.0)


class FleetMetrics:
    """Totals since the dashboard started, and the gauges of the last scrape."""

    def __init__(self, dashboard: Dashboard) -> None:
        self._dashboard = dashboard
        self._since: datetime | None = None
        self._lock = asyncio.Lock()
        self.enqueued: dict[tuple[str, str], int] = defaultdict(int)
        self.started: dict[tuple[str, str], int] = defaultdict(int)
        self.finished: dict[tuple[str, str, str], int] = defaultdict(int)
        self.runs: dict[str, list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self.run_sums: dict[str, float] = defaultdict(float)
        self.gauges: dict[str, Any] = {}

    async def scrape(self) -> bytes:
        """Read the tables, then the text Prometheus reads."""
        async with self._lock:
            await self._update()
        prom = prometheus()
        registry = prom.CollectorRegistry()
        registry.register(_Snapshot(self))
        data: bytes = prom.generate_latest(registry)
        return data

    async def _update(self) -> None:
        reads = self._dashboard.reads
        until = datetime.now(UTC).replace(tzinfo=None) - LAG
        if self._since is not None:
            params = {"since": self._since, "until": until, "bounds": list(BUCKETS)}
            for row in await reads.rows(reads.table.activity, params):
                self._add(row)
        self._since = until
        live, ended, queues, workers, master = await asyncio.gather(
            reads.counts(False),
            reads.counts(True),
            self._dashboard.client.get_queues_async(),
            reads.workers(10_000),
            reads.master(),
        )
        self.gauges = {
            "live": live,
            "ended": ended,
            "queues": queues,
            "alive": sum(1 for w in workers if w["status"] == "RUNNING"),
            "master": 1 if master["worker_id"] else 0,
        }

    def _add(self, row: dict[str, Any]) -> None:
        task, queue = row["task_name"], row["queue"]
        self.enqueued[task, queue] += row["enqueued"]
        self.started[task, queue] += row["started"]
        if row["status"] is not None and row["finished"]:
            self.finished[task, queue, row["status"]] += row["finished"]
        if row["timed"] and row["bucket"] is not None:
            self.runs[task][row["bucket"]] += row["timed"]
            self.run_sums[task] += row["run_seconds"]


class _Snapshot:
    """The metrics of one scrape, from what ``FleetMetrics`` holds (no I/O here)."""

    def __init__(self, metrics: FleetMetrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        m = self._m
        enqueued = CounterMetricFamily("queuer_jobs_enqueued", "Jobs enqueued", labels=["task", "queue"])
        for (task, queue), n in sorted(m.enqueued.items()):
            enqueued.add_metric([task, queue], n)
        started = CounterMetricFamily("queuer_jobs_started", "Jobs started", labels=["task", "queue"])
        for (task, queue), n in sorted(m.started.items()):
            started.add_metric([task, queue], n)
        finished = CounterMetricFamily(
            "queuer_jobs_finished", "Jobs finished (archived)", labels=["task", "queue", "status"]
        )
        for (task, queue, status), n in sorted(m.finished.items()):
            finished.add_metric([task, queue, status], n)
        runs = HistogramMetricFamily(
            "queuer_job_run_seconds", "How long runs of a task took", labels=["task"]
        )
        for task, counts in sorted(m.runs.items()):
            cumulative, total = [], 0
            for bound, n in zip([*map(str, BUCKETS), "+Inf"], counts, strict=True):
                total += n
                cumulative.append((bound, total))
            runs.add_metric([task], cumulative, m.run_sums[task])
        yield from (enqueued, started, finished, runs)

        g = m.gauges
        if not g:
            return
        jobs = GaugeMetricFamily(
            "queuer_jobs",
            "Jobs in job by state and queue (estimated on big tables)",
            labels=["state", "queue"],
        )
        for queue, statuses in g["live"].by_queue.items():
            for status, n in sorted(statuses.items()):
                jobs.add_metric([status.lower(), queue], n)
        archived = GaugeMetricFamily(
            "queuer_jobs_archived",
            "Jobs in job_archive by status (estimated on big tables)",
            labels=["status"],
        )
        for status, n in sorted(g["ended"].by_status.items()):
            archived.add_metric([status], n)
        oldest = GaugeMetricFamily(
            "queuer_oldest_queued_seconds", "Age of the oldest queued job, per queue", labels=["queue"]
        )
        for queue in g["queues"]:
            if queue.oldest_queued_seconds is not None:
                oldest.add_metric([queue.name], queue.oldest_queued_seconds)
        paused = GaugeMetricFamily("queuer_queue_paused", "1 while a queue is paused", labels=["queue"])
        for queue in g["queues"]:
            paused.add_metric([queue.name], 1 if queue.paused else 0)
        alive = GaugeMetricFamily(
            "queuer_workers_alive", "Worker rows RUNNING (Python and Go)", value=g["alive"]
        )
        master = GaugeMetricFamily(
            "queuer_master_present", "1 while a worker holds the master role", value=g["master"]
        )
        yield from (jobs, archived, oldest, paused, alive, master)

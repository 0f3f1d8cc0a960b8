"""Jobs scheduled far ahead beside a drain: does every claim walk past them?

    python benchmarks/scheduled_head.py [--scheduled 10000] [--jobs 20000]

Two drains of ``--jobs`` no-op jobs by one worker process, in the same run: one with nothing else
in ``job``, one after ``--scheduled`` jobs due tomorrow were written first (older than every job of
the drain). Rates come from the worker's own start times. Then the same for pickup latency: 200
single jobs 20 ms apart to an idle worker (from ``add_job``'s return to the task's start), without
and beside the scheduled jobs. Results are appended to benchmarks/history.jsonl.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from common import machine, noop_producer, pickup_latency, record, scratch_database
from run import Worker, prepare

from queuer import BatchJob, Options, Schedule


@contextmanager
def _beside_scheduled(scheduled: int) -> Iterator[tuple[str, Any]]:
    """A fresh database holding ``scheduled`` jobs due tomorrow, analyzed: (url, a producer)."""
    with scratch_database() as (url, config):
        prepare("queuer", url)
        producer = noop_producer(config)
        later = Options(schedule=Schedule(start=datetime.now(UTC) + timedelta(days=1)))
        for start in range(0, scheduled, 10_000):
            producer.add_jobs(
                [BatchJob("noop", options=later) for _ in range(min(10_000, scheduled - start))]
            )
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE job")
        try:
            yield url, producer
        finally:
            producer.stop()


def pickup(scheduled: int, count: int = 200, gap: float = 0.02) -> dict[str, Any]:
    with _beside_scheduled(scheduled) as (url, producer):
        worker = Worker("queuer", url)
        sent: dict[str, float] = {}
        for _ in range(count):
            sent[str(producer.add_job("noop").rid)] = time.monotonic()
            time.sleep(gap)
        time.sleep(1.0)
        starts = worker.stop()
    return {"scheduled_ahead": scheduled, **pickup_latency(sent, starts)}


def drain(jobs: int, scheduled: int) -> dict[str, Any]:
    with _beside_scheduled(scheduled) as (url, producer), psycopg.connect(url, autocommit=True) as conn:
        worker = Worker("queuer", url)
        producer.add_jobs([BatchJob("noop") for _ in range(jobs)])
        while (row := conn.execute("SELECT count(*) FROM job_archive").fetchone()) and row[0] < jobs:
            time.sleep(0.05)
        starts = sorted(worker.stop().values())
    return {
        "jobs": jobs,
        "scheduled_ahead": scheduled,
        "ran": len(starts),
        "jobs_per_s": round((len(starts) - 1) / (starts[-1] - starts[0])),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scheduled", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=20_000)
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine()}
    results["plain"] = drain(args.jobs, 0)
    print("plain:", results["plain"], flush=True)
    results["beside_scheduled"] = drain(args.jobs, args.scheduled)
    print("beside scheduled:", results["beside_scheduled"], flush=True)
    results["ratio"] = round(results["beside_scheduled"]["jobs_per_s"] / results["plain"]["jobs_per_s"], 3)
    print(f"beside {args.scheduled} scheduled jobs: {results['ratio']:.1%} of the plain drain")
    results["pickup_plain"] = pickup(0)
    results["pickup_beside_scheduled"] = pickup(args.scheduled)
    print("pickup:", results["pickup_plain"], results["pickup_beside_scheduled"], flush=True)
    record("scheduled_head", results)


if __name__ == "__main__":
    main()

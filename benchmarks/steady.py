"""A steady producer against one worker process: does the worker keep up?

    python benchmarks/steady.py [--rate 8000] [--batch 50] [--seconds 5]

The drain benchmark (run.py) starts with a full queue; this one feeds jobs while the worker runs,
the load under which a worker moves in and out of saturation (see the README). The producer runs
here and enqueues ``--batch`` jobs with ``add_jobs`` at ``--rate`` jobs per second; the worker is
a separate process (queuer_side.py). Reported: what was sent, the backlog left when the producer
stopped, the time to drain it, and how often ``job`` was analyzed. A worker that keeps up leaves a
small backlog; one that falls behind (a stale claim plan, lost wake-ups) leaves thousands.
"""

from __future__ import annotations

import argparse
import time

import psycopg
from common import machine, record, scratch_database
from run import Worker, pending, prepare

from queuer import BatchJob, new_queuer_with_db


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=8000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    results = {"machine": machine(), "rate": args.rate, "batch": args.batch, "seconds": args.seconds}
    with scratch_database() as (url, config):
        prepare("queuer", url)
        worker = Worker("queuer", url)
        producer = new_queuer_with_db("bench-producer", 1, None, config)

        async def noop() -> None: ...

        producer.add_task(noop)
        began, sent = time.monotonic(), 0
        while time.monotonic() - began < args.seconds:
            producer.add_jobs([BatchJob(noop) for _ in range(args.batch)])
            sent += args.batch
            ahead = began + sent / args.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        stopped = time.monotonic()
        with psycopg.connect(url, autocommit=True) as conn:
            backlog = conn.execute("SELECT count(*) FROM job").fetchone()[0]  # type: ignore[index]
            while pending(conn, "queuer"):
                time.sleep(0.01)
            drained = time.monotonic()
            analyzed = conn.execute(
                "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'job'"
            ).fetchone()[0]  # type: ignore[index]
        producer.stop()
        ran = len(worker.stop())
    results.update(
        sent=sent,
        offered_per_s=round(sent / (stopped - began)),
        ran=ran,
        backlog_when_producer_stopped=backlog,
        seconds_to_drain_backlog=round(drained - stopped, 3),
        analyze_count=analyzed,
    )
    record("steady", results)


if __name__ == "__main__":
    main()

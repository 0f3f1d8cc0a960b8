"""A big backlog: draining 1,000,000 queued jobs against a 20,000-job drain in the same run, on a
server whose autovacuum may be off (this machine's is).

    python benchmarks/backlog.py [--jobs 1000000] [--small 20000] [--dsn URL]

The jobs are enqueued (COPY, 100,000 at a time) before the worker starts; one worker process
(run.py's, 10 slots, no-op async tasks) then drains them. Rates come from the worker's own start
time of each job: overall, first 10 % and last 10 %. Afterwards the table's dead rows and size.
Results are appended to benchmarks/history.jsonl.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import psycopg
from common import machine, noop_producer, record, scratch_database
from run import Worker, prepare

from queuer import BatchJob


def drain(n: int) -> dict[str, Any]:
    with scratch_database() as (url, config):
        prepare("queuer", url)
        producer = noop_producer(config)
        for start in range(0, n, 100_000):
            producer.add_jobs([BatchJob("noop") for _ in range(min(100_000, n - start))])
        producer.stop()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE job")
            worker = Worker("queuer", url)
            while conn.execute("SELECT 1 FROM job ORDER BY id LIMIT 1").fetchone() is not None:
                time.sleep(0.05)
            starts = sorted(worker.stop().values())
            stats = conn.execute(
                "SELECT n_dead_tup, n_live_tup, vacuum_count, autovacuum_count, "
                "pg_total_relation_size('job') FROM pg_stat_user_tables WHERE relname = 'job'"
            ).fetchone()
    tenth = max(len(starts) // 10, 1)

    def rate(part: list[float]) -> float:
        return round((len(part) - 1) / (part[-1] - part[0])) if len(part) > 1 and part[-1] > part[0] else 0.0

    assert stats is not None
    return {
        "jobs": n,
        "ran": len(starts),
        "seconds": round(starts[-1] - starts[0], 2),
        "jobs_per_s": rate(starts),
        "first_tenth_jobs_per_s": rate(starts[:tenth]),
        "last_tenth_jobs_per_s": rate(starts[-tenth:]),
        "dead_rows_after": stats[0],
        "vacuums_by_queuer": stats[2],
        "autovacuums": stats[3],
        "job_bytes_after": stats[4],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--dsn", help="another server (e.g. one with autovacuum on)")
    args = parser.parse_args()
    if args.dsn:
        os.environ["QUEUER_BENCH_DSN"] = args.dsn
    results: dict[str, Any] = {"machine": machine()}
    with psycopg.connect(
        os.environ.get("QUEUER_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    ) as c:
        row = c.execute("SHOW autovacuum").fetchone()
    results["autovacuum"] = row[0] if row else None
    results["small"] = drain(args.small)
    print("small:", results["small"], flush=True)
    results["backlog"] = drain(args.jobs)
    print("backlog:", results["backlog"], flush=True)
    big, small = results["backlog"], results["small"]
    results["backlog_of_small"] = round(big["jobs_per_s"] / small["jobs_per_s"], 3)
    results["last_of_first_tenth"] = round(big["last_tenth_jobs_per_s"] / big["first_tenth_jobs_per_s"], 3)
    print(
        f"backlog {results['backlog_of_small']:.1%} of the small drain; last tenth {results['last_of_first_tenth']:.1%} of the first"
    )
    record("backlog", results)


if __name__ == "__main__":
    main()

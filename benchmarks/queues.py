"""Queues, priorities and flow control under load, against the plain drain of an earlier install.

    python benchmarks/queues.py BASE_PYTHON [--repeat 3] [--jobs 20000]

BASE_PYTHON is an interpreter with a (non-editable) install of the version to compare with (the
commit before queues, say); its worker runs run.py's plain drain. In the same run, with this
checkout: the plain drain; 3 queues with random priorities (a worker listing the three, and a
worker of every queue); a queue limited to 5 concurrent jobs drained by 2 worker processes while
a sampler counts its RUNNING rows in every committed state it can see; and a queue limited to 200
starts per second, whose starts in the first 10 seconds are counted. One worker process for the
drains, 20,000 no-op jobs. Results are appended to benchmarks/history.jsonl.
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from common import machine, noop_producer, record, scratch_database
from run import Worker, drain, enqueue_with, prepare

from queuer import BatchJob, DatabaseConfiguration, Options

QUEUES = ("critical", "default", "low")
HERE = Path(__file__).resolve().parent


def enqueue_spread(url: str, config: DatabaseConfiguration, n: int) -> float:
    """``n`` no-op jobs over three queues with random priorities, one COPY; the commit's time."""
    rng = random.Random(25)
    q = noop_producer(config)
    q.add_jobs(
        [
            BatchJob("noop", options=Options(queue=rng.choice(QUEUES), priority=rng.randint(0, 9)))
            for _ in range(n)
        ]
    )
    committed = time.monotonic()
    q.stop()
    return committed


def concurrency_limit(n: int, limit: int = 5, processes: int = 2) -> dict[str, Any]:
    """A queue limited to ``limit`` RUNNING jobs, 2 worker processes of 10 slots each, jobs of 5 ms:
    the most RUNNING rows of the queue any sample saw."""
    with scratch_database() as (url, config):
        prepare("queuer", url)
        producer = noop_producer(config)
        producer.set_queue_limits("limited", concurrency=limit)
        env = {"QUEUER_BENCH_SLEEP_MS": "5"}
        workers = [Worker("queuer", url, env=env) for _ in range(processes)]
        peaks: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                while not stop.is_set():
                    row = conn.execute(
                        "SELECT count(*) FROM job WHERE status = 'RUNNING' "
                        "AND options -> 'metadata' -> 'queuer_py' ->> 'queue' = 'limited'"
                    ).fetchone()
                    peaks.append(row[0] if row else 0)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.monotonic()
        producer.add_jobs([BatchJob("noop", options=Options(queue="limited")) for _ in range(n)])
        with psycopg.connect(url, autocommit=True) as conn:
            while conn.execute("SELECT 1 FROM job LIMIT 1").fetchone() is not None:
                time.sleep(0.05)
            by_worker = conn.execute("SELECT count(DISTINCT worker_id) FROM job_archive").fetchone()
        seconds = time.monotonic() - started
        stop.set()
        sampler.join()
        ran = sum(len(w.stop()) for w in workers)
        producer.stop()
    return {
        "jobs": n,
        "limit": limit,
        "processes": processes,
        "ran": ran,
        "workers_that_ran_jobs": by_worker[0] if by_worker else 0,
        "samples": len(peaks),
        "max_running_seen": max(peaks),
        "samples_at_limit": sum(1 for p in peaks if p == limit),
        "seconds": round(seconds, 2),
    }


def rate_limit(rate: int = 200, seconds: float = 10.0, processes: int = 2) -> dict[str, Any]:
    """A queue limited to ``rate`` starts per second with a backlog far beyond it: how many jobs
    started in the ``seconds`` after the first start (server clock, ``started_at``)."""
    with scratch_database() as (url, config):
        prepare("queuer", url)
        producer = noop_producer(config)
        producer.set_queue_limits("partner", rate=rate, per=timedelta(seconds=1))
        workers = [Worker("queuer", url) for _ in range(processes)]
        producer.add_jobs(
            [BatchJob("noop", options=Options(queue="partner")) for _ in range(int(rate * seconds * 2))]
        )
        with psycopg.connect(url, autocommit=True) as conn:
            while conn.execute("SELECT 1 FROM job_archive LIMIT 1").fetchone() is None:
                time.sleep(0.01)
            time.sleep(seconds + 1.0)
            row = conn.execute(
                "WITH s AS (SELECT started_at FROM job_archive UNION ALL "
                "SELECT started_at FROM job WHERE status = 'RUNNING'), "
                "f AS (SELECT min(started_at) AS first FROM s) "
                "SELECT count(*) FROM s, f WHERE started_at < f.first + make_interval(secs => %s)",
                (seconds,),
            ).fetchone()
        for w in workers:
            w.stop()
        producer.stop()
    started = row[0] if row else 0
    expected = rate * seconds
    return {
        "rate_per_s": rate,
        "window_s": seconds,
        "processes": processes,
        "started_in_window": started,
        "expected": expected,
        "deviation_pct": round(100 * (started - expected) / expected, 2),
    }


def _median(rounds: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_python")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument(
        "--drains", default="base_plain,plain,queues_listed,queues_all", help="which drains, comma-separated"
    )
    parser.add_argument("--no-limits", action="store_true", help="skip the limit checks")
    args = parser.parse_args()
    chosen = args.drains.split(",")
    listed = {"QUEUER_BENCH_QUEUES": ",".join(QUEUES)}
    drains: dict[str, list[dict[str, Any]]] = {name: [] for name in chosen}
    for round_no in range(args.repeat):
        plan = [
            (
                "base_plain",
                lambda: drain(
                    "queuer",
                    1,
                    args.jobs,
                    python=args.base_python,
                    enqueue_jobs=enqueue_with(args.base_python),
                ),
            ),
            ("plain", lambda: drain("queuer", 1, args.jobs)),
            ("queues_listed", lambda: drain("queuer", 1, args.jobs, env=listed, enqueue_jobs=enqueue_spread)),
            ("queues_all", lambda: drain("queuer", 1, args.jobs, enqueue_jobs=enqueue_spread)),
        ]
        plan = [(name, run) for name, run in plan if name in chosen]
        if round_no % 2:
            plan.reverse()
        for name, run in plan:
            result = run()
            drains[name].append(result)
            print(
                f"round {round_no + 1} {name}: {result['jobs_per_s']} jobs/s ({result['ran']} ran)",
                flush=True,
            )
    base = _median(drains["base_plain"], "jobs_per_s")
    results: dict[str, Any] = {"machine": machine(), "jobs": args.jobs, "rounds": args.repeat}
    for name, rounds in drains.items():
        rate = _median(rounds, "jobs_per_s")
        results[name] = {"jobs_per_s_median": rate, "of_base_plain": round(rate / base, 3), "rounds": rounds}
        print(f"{name}: median {rate:.0f} jobs/s, {rate / base:.1%} of the base's plain drain")
    if not args.no_limits:
        results["concurrency_limit"] = concurrency_limit(2000)
        print("concurrency limit:", results["concurrency_limit"])
        results["rate_limit"] = rate_limit()
        print("rate limit:", results["rate_limit"])
    record("queues", results)


if __name__ == "__main__":
    main()

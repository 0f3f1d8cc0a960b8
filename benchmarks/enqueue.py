"""Enqueue rates: add_job from one thread, add_job_async from one asyncio task (the caller's own
event loop, as in a FastAPI handler), add_jobs (binary COPY) for 20,000 and 100,000 jobs.

Each round also times a reference: the server alone inserting 20,000 rows of the same shape into
``job`` (``INSERT ... SELECT``: the same triggers and indexes, no client work), so that a COPY
figure can be told apart from what the server could do at that moment.

    python benchmarks/enqueue.py [--repeat 5]

Against QUEUER_BENCH_DSN (default: the local PostgreSQL). Every round gets a fresh database; the
medians over the rounds are reported, each round's figures are kept in the results file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

import psycopg
from common import cpu_probe_ms, machine, record, scratch_database

from queuer import BatchJob, new_queuer_with_db

SINGLE_JOBS = 3000
BATCH_SIZES = (20_000, 100_000)


def one_round() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    with scratch_database() as (url, config):
        q = new_queuer_with_db("bench-producer", 1, None, config)

        def noop(i: int) -> None: ...

        q.add_task(noop)
        for _ in range(200):  # warm up the pool and prepared statements
            q.add_job(noop, 0)
        began = time.perf_counter()
        for i in range(SINGLE_JOBS):
            q.add_job(noop, i)
        out["add_job_one_thread"] = _rate(SINGLE_JOBS, time.perf_counter() - began)

        async def enqueue_async() -> float:
            for _ in range(200):
                await q.add_job_async(noop, 0)
            began = time.perf_counter()
            for i in range(SINGLE_JOBS):
                await q.add_job_async(noop, i)
            return time.perf_counter() - began

        out["add_job_async_one_task"] = _rate(SINGLE_JOBS, asyncio.run(enqueue_async()))
        for size in BATCH_SIZES:
            batch = [BatchJob(noop, [i]) for i in range(size)]
            began = time.perf_counter()
            q.add_jobs(batch)
            out[f"add_jobs_copy_{size}"] = _rate(size, time.perf_counter() - began)
        q.stop()
        out["reference_server_only_insert_20000"] = _rate(20_000, server_only_insert(url, 20_000))
    return out


def server_only_insert(url: str, rows: int) -> float:
    """Seconds the server takes to insert ``rows`` jobs shaped as add_jobs writes them."""
    with psycopg.connect(url, autocommit=True) as conn:
        began = time.perf_counter()
        conn.execute(
            "INSERT INTO job (rid, options, task_name, parameters, parameters_keyed, status, schedule_count, "
            "created_at, updated_at) SELECT gen_random_uuid(), '{}', 'noop', jsonb_build_array(i), '{}', "
            "'QUEUED', 0, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC' FROM generate_series(1, %s) AS i",
            (rows,),
        )
        return time.perf_counter() - began


def _rate(jobs: int, seconds: float) -> dict[str, Any]:
    return {"jobs": jobs, "seconds": round(seconds, 3), "jobs_per_s": round(jobs / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5, help="rounds, each on a fresh database")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine(), "rounds": args.repeat}
    rounds = []
    for number in range(args.repeat):
        measured = one_round()
        rounds.append(measured)
        print(f"round {number + 1}", {k: v["jobs_per_s"] for k, v in measured.items()}, flush=True)
    for workload in rounds[0]:
        rates = [r[workload]["jobs_per_s"] for r in rounds]
        results[workload] = {
            "jobs": rounds[0][workload]["jobs"],
            "jobs_per_s_median": round(statistics.median(rates)),
            "jobs_per_s_min": min(rates),
            "jobs_per_s_max": max(rates),
        }
    results["per_round"] = rounds
    results["machine"]["load_1m_after"] = round(os.getloadavg()[0], 2)
    results["machine"]["cpu_probe_ms_after"] = cpu_probe_ms()
    record("enqueue", results)


if __name__ == "__main__":
    main()

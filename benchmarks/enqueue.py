"""Enqueue rates: add_job from one thread, add_jobs (binary COPY) for 20,000 and 100,000 jobs.

python benchmarks/enqueue.py            # against QUEUER_BENCH_DSN (default: local PostgreSQL)
"""

from __future__ import annotations

import time

from common import machine, record, scratch_database

from queuer import BatchJob, new_queuer_with_db


def main() -> None:
    info = machine()
    results: dict[str, object] = {"machine": info}
    with scratch_database() as (_, config):
        q = new_queuer_with_db("bench-producer", 1, None, config)

        def noop(i: int) -> None: ...

        q.add_task(noop)
        for _ in range(200):  # warm up the pool and prepared statements
            q.add_job(noop, 0)
        n = 3000
        began = time.perf_counter()
        for i in range(n):
            q.add_job(noop, i)
        elapsed = time.perf_counter() - began
        results["add_job_one_thread"] = {
            "jobs": n,
            "seconds": round(elapsed, 3),
            "jobs_per_s": round(n / elapsed),
        }
        for size in (20_000, 100_000):
            batch = [BatchJob(noop, [i]) for i in range(size)]
            began = time.perf_counter()
            q.add_jobs(batch)
            elapsed = time.perf_counter() - began
            results[f"add_jobs_copy_{size}"] = {
                "jobs": size,
                "seconds": round(elapsed, 3),
                "jobs_per_s": round(size / elapsed),
            }
        q.stop()
    record("enqueue", results)


if __name__ == "__main__":
    main()

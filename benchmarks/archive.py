"""A big archive: finishing jobs with 10,000,000 rows in ``job_archive`` against an empty one, and
how fast the master's retention deletes old rows.

    python benchmarks/archive.py [--rows 10000000] [--jobs 20000]

In one database: a 20,000-job drain (one worker process) with an empty archive; the archive
filled with ``--rows`` finished jobs spread over the last 60 days (INSERT ... SELECT, then VACUUM
ANALYZE); the same drain again; then retention of rows older than 30 days through the master's
own batched delete, timed batch by batch. Results are appended to benchmarks/history.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import timedelta
from typing import Any

import psycopg
from common import machine, noop_producer, record, scratch_database, wait_until_drained
from run import Worker, prepare

from queuer import BatchJob
from queuer.database.store import Store

FILL = """
INSERT INTO job_archive (id, rid, worker_id, options, task_name, parameters, parameters_keyed, status,
                         results, error, created_at, updated_at, started_at, attempts, schedule_count)
SELECT g, CASE WHEN %(time_ordered)s THEN time_ordered_rid(g, %(rows)s, %(spread)s) ELSE gen_random_uuid() END,
       1, '{}', 'noop', '[]', '{}', 'SUCCEEDED', '[]', '',
       now() AT TIME ZONE 'UTC' - make_interval(secs => (%(rows)s - g) * %(spread)s),
       now() AT TIME ZONE 'UTC' - make_interval(secs => (%(rows)s - g) * %(spread)s),
       now() AT TIME ZONE 'UTC' - make_interval(secs => (%(rows)s - g) * %(spread)s), 1, 1
FROM generate_series(%(first)s, %(last)s) AS g
"""


# The rids queuer writes are UUIDv7 (time first, so the archive's rid index grows at its right
# edge); Go writes random ones (v4). --random-rids fills the archive with those instead.
TIME_ORDERED_RID = """
CREATE FUNCTION time_ordered_rid(g bigint, total bigint, spread float8) RETURNS uuid LANGUAGE sql AS $$
    SELECT (substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-7' || substr(r, 1, 3) || '-8' || substr(r, 4, 3)
            || '-' || substr(r, 7, 12))::uuid
    FROM (SELECT lpad(to_hex((extract(epoch FROM now() - make_interval(secs => (total - g) * spread)) * 1000)::bigint),
                      12, '0') AS h, md5(g::text) AS r) AS x
$$
"""


def timed_drain(url: str, config: Any, n: int) -> float:
    producer = noop_producer(config)
    with psycopg.connect(url, autocommit=True) as conn:
        # Both drains start right after a checkpoint: the fill's WAL would otherwise make a
        # checkpoint (and its full-page writes) fall into the second one only.
        conn.execute("CHECKPOINT")
    worker = Worker("queuer", url)
    producer.add_jobs([BatchJob("noop") for _ in range(n)])
    done = wait_until_drained(url)
    producer.stop()
    starts = worker.stop()
    return n / (done - min(starts.values()))


async def retention(config: Any, keep: timedelta, batch: int) -> dict[str, Any]:
    store = Store(config, 2)
    await store.open()
    times, deleted = [], 0
    try:
        while True:
            began = time.perf_counter()
            gone = await store.master.delete_old_archive_rows(keep, batch, 1)
            times.append(time.perf_counter() - began)
            deleted += gone
            if gone < batch:
                break
    finally:
        await store.close()
    total = sum(times)
    return {
        "deleted": deleted,
        "rows_per_s": round(deleted / total) if total else 0,
        "batch": batch,
        "longest_batch_ms": round(max(times) * 1000, 1),
        "median_batch_ms": round(sorted(times)[len(times) // 2] * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--random-rids", action="store_true", help="fill with random (v4) rids, as Go writes")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": machine(),
        "rows": args.rows,
        "jobs": args.jobs,
        "rids": "random" if args.random_rids else "time-ordered",
    }
    with scratch_database() as (url, config):
        prepare("queuer", url)
        results["empty_archive_jobs_per_s"] = round(timed_drain(url, config, args.jobs))
        print("empty archive:", results["empty_archive_jobs_per_s"], flush=True)
        began = time.monotonic()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT setval(pg_get_serial_sequence('job', 'id'), %s)", (args.rows + 10_000_000,))
            spread = 60 * 86400 / args.rows
            conn.execute(TIME_ORDERED_RID)
            for first in range(1, args.rows + 1, 1_000_000):
                last = min(first + 999_999, args.rows)
                params = {"rows": args.rows, "spread": spread, "first": first, "last": last}
                conn.execute(FILL, {**params, "time_ordered": not args.random_rids})
            conn.execute("VACUUM ANALYZE job_archive")
            size = conn.execute("SELECT pg_total_relation_size('job_archive')").fetchone()
        results["fill_seconds"] = round(time.monotonic() - began)
        results["archive_bytes"] = size[0] if size else None
        print("filled in", results["fill_seconds"], "s", flush=True)
        results["full_archive_jobs_per_s"] = round(timed_drain(url, config, args.jobs))
        results["full_of_empty"] = round(
            results["full_archive_jobs_per_s"] / results["empty_archive_jobs_per_s"], 3
        )
        print("full archive:", results["full_archive_jobs_per_s"], results["full_of_empty"], flush=True)
        results["retention"] = asyncio.run(retention(config, timedelta(days=30), 5000))
        print("retention:", results["retention"], flush=True)
    record("archive", results)


if __name__ == "__main__":
    main()

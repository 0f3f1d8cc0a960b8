"""A big backlog: draining 1,000,000 queued jobs against a 20,000-job drain in the same run, on a
server whose autovacuum may be off (this machine's is).

    python benchmarks/backlog.py [--jobs 1000000] [--small 20000] [--dsn URL]

The jobs are enqueued (COPY, 100,000 at a time) before the worker starts; one worker process
(run.py's, 10 slots, no-op async tasks) then drains them. Rates come from the worker's own start
time of each job: overall, first 10 % and last 10 %. Afterwards the table's dead rows and size.
Where the time went, per drain: CPU per 1,000 jobs of the worker and of its server processes,
the database's block reads and the buffers its backends had to write themselves; with
``--statements`` (a server with ``pg_stat_statements`` loaded, a cluster of your own) the statements
that took the most time. Results are appended to benchmarks/history.jsonl.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import psycopg
from common import (
    DrainUsage,
    backend_pids,
    machine,
    noop_producer,
    per_job,
    record,
    scratch_database,
    server_dsn,
)
from run import Worker, prepare

from queuer import BatchJob

_IO = (
    "SELECT d.blks_read, d.blks_hit, b.buffers_backend, b.buffers_clean, b.buffers_checkpoint "
    "FROM pg_stat_database d, pg_stat_bgwriter b WHERE d.datname = current_database()"
)
_STATEMENTS = (
    "SELECT calls, round(total_exec_time::numeric, 1)::float8, round(mean_exec_time::numeric, 3)::float8, "
    "shared_blks_read, shared_blks_dirtied, shared_blks_written, round(blk_read_time::numeric, 1)::float8, "
    "left(regexp_replace(query, '\\s+', ' ', 'g'), 140) FROM pg_stat_statements s "
    "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s ORDER BY total_exec_time DESC LIMIT 8"
)


def top_statements(conn: psycopg.Connection[Any], database: str) -> list[dict[str, Any]]:
    """The statements of ``database`` that took the most time since the last reset."""
    keys = ("calls", "total_ms", "mean_ms", "blks_read", "blks_dirtied", "blks_written", "read_ms", "query")
    return [dict(zip(keys, row, strict=True)) for row in conn.execute(_STATEMENTS, (database,)).fetchall()]


def drain(n: int, statements: bool = False) -> dict[str, Any]:
    with scratch_database() as (url, config):
        prepare("queuer", url)
        producer = noop_producer(config)
        for start in range(0, n, 100_000):
            producer.add_jobs([BatchJob("noop") for _ in range(min(100_000, n - start))])
        producer.stop()
        with (
            psycopg.connect(url, autocommit=True) as conn,
            psycopg.connect(server_dsn(), autocommit=True) as admin,
        ):
            conn.execute("ANALYZE job")
            if statements:
                admin.execute("SELECT pg_stat_statements_reset()")
            io_before = conn.execute(_IO).fetchone()
            worker = Worker("queuer", url)
            usage = DrainUsage([worker.proc.pid], backend_pids(conn))
            while conn.execute("SELECT 1 FROM job ORDER BY id LIMIT 1").fetchone() is not None:
                time.sleep(0.05)
            spent = usage.spent()
            time.sleep(0.6)  # the server's statistics reach the views within 500 ms
            io_after = conn.execute(_IO).fetchone()
            top = top_statements(admin, conn.info.dbname) if statements else None
            starts = sorted(worker.stop().values())
            stats = conn.execute(
                "SELECT n_dead_tup, n_live_tup, vacuum_count, autovacuum_count, "
                "pg_total_relation_size('job') FROM pg_stat_user_tables WHERE relname = 'job'"
            ).fetchone()
    tenth = max(len(starts) // 10, 1)

    def rate(part: list[float]) -> float:
        return round((len(part) - 1) / (part[-1] - part[0])) if len(part) > 1 and part[-1] > part[0] else 0.0

    assert stats is not None and io_before is not None and io_after is not None
    io = [after - before for before, after in zip(io_before, io_after, strict=True)]
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
        "worker_cpu_s_per_1000_jobs": per_job(spent.worker_cpu, n, 1e-3),
        "server_cpu_s_per_1000_jobs": per_job(spent.server_cpu, n, 1e-3),
        "blocks_read_per_job": round(io[0] / n, 2),
        "blocks_hit_per_job": round(io[1] / n, 2),
        "buffers_written_by_backends": io[2],
        "buffers_written_by_bgwriter": io[3],
        "buffers_written_by_checkpoints": io[4],
        **({"top_statements": top} if top is not None else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--dsn", help="another server (e.g. one with autovacuum on)")
    parser.add_argument(
        "--statements",
        action="store_true",
        help="report the top statements (the server has pg_stat_statements)",
    )
    args = parser.parse_args()
    if args.dsn:
        os.environ["QUEUER_BENCH_DSN"] = args.dsn
    results: dict[str, Any] = {"machine": machine()}
    with psycopg.connect(
        os.environ.get("QUEUER_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    ) as c:
        row = c.execute("SHOW autovacuum").fetchone()
    results["autovacuum"] = row[0] if row else None
    results["small"] = drain(args.small, args.statements)
    print("small:", results["small"], flush=True)
    results["backlog"] = drain(args.jobs, args.statements)
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

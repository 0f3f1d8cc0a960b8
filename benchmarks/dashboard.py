"""The dashboard on big tables: how fast its pages answer with 1,000,000 jobs in ``job`` and
5,000,000 in ``job_archive``, and what it costs the database while nobody watches.

    python benchmarks/dashboard.py [--jobs 1000000] [--archived 5000000] [--requests 20]

In one database: ``job`` filled with queued, scheduled and running jobs of 8 tasks in 5 queues,
``job_archive`` with finished ones spread over the last 7 days (3 % failed, 1 % cancelled), both
by INSERT ... SELECT with triggers off for the fill (no notifications for rows nobody waits for),
then VACUUM ANALYZE as the master's maintenance would leave them. The dashboard is served by
uvicorn in this process; each page is fetched ``--requests`` times after one warm-up, and the
median and worst are reported. Then the database's committed transactions are counted over
``--idle`` seconds with the dashboard open and no page open, and the sessions that ran a statement
meanwhile (its cost when nobody watches).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Any

import httpx
import psycopg
import uvicorn
from common import machine, record, scratch_database

from queuer import connect_with_db
from queuer.dashboard import create_app

QUEUES = ("default", "mail", "reports", "billing", "search")
TASKS = tuple(f"task_{i}" for i in range(8))

FILL_JOBS = """
INSERT INTO job (rid, task_name, status, options, parameters, scheduled_at, started_at, worker_id, created_at, updated_at)
SELECT gen_random_uuid(), 'task_' || (g %% 8),
       CASE WHEN g %% 100 = 0 THEN 'RUNNING' WHEN g %% 10 = 1 THEN 'SCHEDULED' ELSE 'QUEUED' END,
       CASE WHEN g %% 5 = 0 THEN '{}'::jsonb
            ELSE jsonb_build_object('metadata', jsonb_build_object('queuer_py', jsonb_build_object(
                'queue', (ARRAY['mail', 'reports', 'billing', 'search'])[g %% 4 + 1], 'priority', g %% 3))) END,
       jsonb_build_array(g),
       CASE WHEN g %% 10 = 1 THEN now() AT TIME ZONE 'UTC' + interval '1 day' END,
       CASE WHEN g %% 100 = 0 THEN now() AT TIME ZONE 'UTC' END,
       CASE WHEN g %% 100 = 0 THEN 1 ELSE 0 END,
       now() AT TIME ZONE 'UTC' - make_interval(secs => (%(n)s - g) * 0.01),
       now() AT TIME ZONE 'UTC' - make_interval(secs => (%(n)s - g) * 0.01)
FROM generate_series(%(first)s, %(last)s) AS g
"""
FILL_ARCHIVE = """
INSERT INTO job_archive (id, rid, worker_id, options, task_name, parameters, status, results, error,
                         created_at, started_at, updated_at, attempts)
SELECT g, gen_random_uuid(), 1,
       CASE WHEN g %% 5 = 0 THEN '{}'::jsonb
            ELSE jsonb_build_object('metadata', jsonb_build_object('queuer_py', jsonb_build_object(
                'queue', (ARRAY['mail', 'reports', 'billing', 'search'])[g %% 4 + 1]))) END,
       'task_' || (g %% 8), jsonb_build_array(g),
       CASE WHEN g %% 100 < 3 THEN 'FAILED' WHEN g %% 100 = 3 THEN 'CANCELLED' ELSE 'SUCCEEDED' END,
       '[]', CASE WHEN g %% 100 < 3 THEN 'ValueError: failed on purpose' ELSE '' END,
       t - interval '2 seconds', t - interval '1 second', t, 1
FROM (SELECT g, now() AT TIME ZONE 'UTC' - make_interval(secs => (%(n)s - g) * %(spread)s) AS t
      FROM generate_series(%(first)s, %(last)s) AS g) AS x
"""


def fill(url: str, jobs: int, archived: int) -> dict[str, Any]:
    began = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # no notify triggers for the fill
        for first in range(1, jobs + 1, 500_000):
            conn.execute(FILL_JOBS, {"n": jobs, "first": first, "last": min(first + 499_999, jobs)})
        spread = 7 * 86400 / max(archived, 1)
        offset = jobs + 10_000_000  # archive ids apart from the live ones
        for first in range(1, archived + 1, 1_000_000):
            last = min(first + 999_999, archived)
            conn.execute(
                FILL_ARCHIVE,
                {"n": archived + offset, "spread": spread, "first": first + offset, "last": last + offset},
            )
        conn.execute("VACUUM ANALYZE job")
        conn.execute("VACUUM ANALYZE job_archive")
        conn.execute("CHECKPOINT")
        sizes = conn.execute(
            "SELECT pg_total_relation_size('job'), pg_total_relation_size('job_archive')"
        ).fetchone()
        newest = conn.execute("SELECT rid FROM job ORDER BY id DESC LIMIT 1").fetchone()
        middle = conn.execute("SELECT id FROM job ORDER BY id LIMIT 1 OFFSET %s", (jobs // 2,)).fetchone()
    assert sizes and newest and middle
    return {
        "fill_seconds": round(time.monotonic() - began),
        "job_bytes": sizes[0],
        "archive_bytes": sizes[1],
        "newest_rid": str(newest[0]),
        "middle_id": middle[0],
    }


def timed(base: str, path: str, requests: int) -> dict[str, float]:
    with httpx.Client(base_url=base, timeout=60) as http:
        first = http.get(path)
        assert first.status_code == 200, (path, first.status_code, first.text[:300])
        times = []
        for _ in range(requests):
            began = time.perf_counter()
            answer = http.get(path)
            times.append((time.perf_counter() - began) * 1000)
            assert answer.status_code == 200, path
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}


def commits(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        assert row is not None
        return int(row[0])


def statements_since(url: str, since: float) -> int:
    """Sessions of this database other than ours that started a statement after ``since``."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND query_start > to_timestamp(%s)",
            (since,),
        ).fetchone()
        assert row is not None
        return int(row[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--archived", type=int, default=5_000_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine(), "jobs": args.jobs, "archived": args.archived}
    with scratch_database() as (url, config):
        client = connect_with_db(config)
        filled = fill(url, args.jobs, args.archived)
        results["fill"] = {k: v for k, v in filled.items() if k not in ("newest_rid", "middle_id")}
        print("filled:", results["fill"], flush=True)
        app = create_app(client)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        pages = {
            "overview": "/",
            "jobs": "/jobs",
            "jobs_queue_and_status": "/jobs?queue=billing&status=QUEUED",
            "jobs_task": "/jobs?task=task_3",
            "jobs_deep_page": f"/jobs?older={filled['middle_id']}",
            "jobs_by_rid": f"/jobs?q={filled['newest_rid']}",
            "archive": "/archive",
            "archive_failed": "/archive?status=FAILED",
            "archive_cancelled": "/archive?status=CANCELLED",
            "job": f"/jobs/{filled['newest_rid']}",
            "scheduled": "/scheduled",
            "workers": "/workers",
            "queues": "/queues",
            "metrics": "/metrics",
        }
        results["pages"] = {}
        for name, path in pages.items():
            results["pages"][name] = timed(base, path, args.requests)
            print(name, results["pages"][name], flush=True)
        # A backend reports its transactions to pg_stat_database up to 10 s after they ran: let
        # the pages' own reports arrive before the idle window opens.
        time.sleep(11)
        window = time.time()
        before = commits(url)
        time.sleep(args.idle)
        # Our own reads of pg_stat_database commit too: the one before is counted after.
        results["idle_commits"] = commits(url) - before - 1
        results["idle_statements"] = statements_since(url, window)
        results["idle_seconds"] = args.idle
        server.should_exit = True
        thread.join(30)
        client.close()
    record("dashboard", results)


if __name__ == "__main__":
    main()

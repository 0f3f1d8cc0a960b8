"""queuer's own table care: storage settings suited to a queue, and a VACUUM by the master once a
table holds many dead rows, whatever the server's autovacuum does."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from queuer import BatchJob
from queuer.database.master_table import MasterTable

from .helpers import FAST_MASTER, QueuerFactory, count, eventually


def test_the_master_vacuums_a_table_full_of_dead_rows(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    q = make_queuer("care", 1)
    q.add_task(print)
    options = sql.execute("SELECT reloptions FROM pg_class WHERE relname = 'job'").fetchone()
    assert options is not None and "vacuum_truncate=false" in options[0]
    q.add_jobs([BatchJob("print", [i]) for i in range(30_000)])
    sql.execute("DELETE FROM job")  # 30,000 dead rows, as a drain leaves them
    dead = "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'job'"
    eventually(lambda: count(sql, dead) >= 30_000, what="the dead rows counted")
    vacuums = "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'job'"
    before = count(sql, vacuums)
    q.start(FAST_MASTER)
    eventually(lambda: count(sql, vacuums) > before, timeout=60, what="a VACUUM of job")
    assert count(sql, dead) < 30_000


def test_retention_walks_the_archive_index_even_as_a_generic_plan(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    """The master runs the retention delete on every tick as a prepared statement: its generic
    plan must not read the whole archive when no row is old enough (it did, growing with the
    archive), and a batch removes the oldest rows first."""
    make_queuer("retained", 1)
    sql.execute(
        "INSERT INTO job_archive (id, rid, status, created_at, updated_at) "
        "SELECT g, gen_random_uuid(), 'SUCCEEDED', now() AT TIME ZONE 'UTC', "
        "now() AT TIME ZONE 'UTC' - make_interval(mins => g) FROM generate_series(1, 5000) AS g"
    )
    statement = MasterTable("public").retention_batch.replace("%s", "$1", 1).replace("%s", "$2", 1)
    sql.execute("SET plan_cache_mode = force_generic_plan")
    sql.execute(f"PREPARE retention(interval, int) AS {statement}")
    plan = sql.execute("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE retention('30 days', 1000)").fetchone()
    assert plan is not None
    text = json.dumps(plan[0])
    assert "Seq Scan" not in text and "queuer_py_job_archive_updated_at" in text
    assert count(sql, "SELECT count(*) FROM job_archive") == 5000
    deleted = sql.execute("EXECUTE retention('60 minutes', 1000)").rowcount
    assert deleted == 1000
    assert count(sql, "SELECT max(id) FROM job_archive") == 4000  # the oldest went first

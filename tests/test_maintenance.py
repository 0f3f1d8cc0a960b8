"""queuer's own table care: storage settings suited to a queue, and a VACUUM by the master once a
table holds many dead rows, whatever the server's autovacuum does."""

from __future__ import annotations

from typing import Any

import psycopg

from queuer import BatchJob

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

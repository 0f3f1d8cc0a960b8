"""Rescue by default: every started worker is a master candidate; a dead Python worker's jobs run
again within a minute; a live Go worker is never declared dead."""

from __future__ import annotations

import time
from datetime import UTC, timedelta
from typing import Any

import psycopg
import pytest

import queuer
from queuer import (
    DatabaseConfiguration,
    OnError,
    Options,
    WorkerStatus,
)

from .helpers import QueuerFactory, WorkerProcess, count, echo, eventually


# -- rescue by default --------------------------------------------------------------------------
@pytest.mark.timeout(180)
def test_sigkill_of_the_master_worker_is_rescued_within_a_minute_with_default_settings(
    database_url: str, make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    sql.execute("CREATE TABLE runs (i int, worker text, at timestamptz DEFAULT clock_timestamp())")
    a = WorkerProcess(database_url, "A", defaults=True)
    started = [a]
    try:
        eventually(
            lambda: count(
                sql,
                "SELECT count(*) FROM master m JOIN worker w ON w.id = m.worker_id WHERE w.rid = %s",
                a.rid,
            ),
            what="A is master (every started worker is a candidate)",
        )
        producer = queuer.connect_with_db(DatabaseConfiguration.from_url(database_url))
        retries = Options(on_error=OnError(max_retries=2, timeout=0))
        for i in range(2):
            producer.add_job_with_options(retries, "crash_work", i, 600.0)
        eventually(
            lambda: count(sql, "SELECT count(*) FROM runs WHERE worker = 'A'") == 2, what="A runs both"
        )
        b = WorkerProcess(database_url, "B", defaults=True)
        started.append(b)
        a.kill()
        row = sql.execute("SELECT updated_at FROM worker WHERE rid = %s", (a.rid,)).fetchone()
        assert row is not None
        last_heartbeat = row[0].replace(tzinfo=UTC)
        eventually(
            lambda: count(sql, "SELECT count(*) FROM runs WHERE worker = 'B'") == 2,
            timeout=90,
            what="B runs A's jobs again",
        )
        latest = sql.execute("SELECT max(at) FROM runs WHERE worker = 'B'").fetchone()
        assert latest is not None
        assert latest[0] - last_heartbeat < timedelta(seconds=60)
        assert sql.execute("SELECT status FROM worker WHERE rid = %s", (a.rid,)).fetchone() == ("STOPPED",)
        producer.close()
    finally:
        for w in started:
            w.terminate()


def test_a_live_go_worker_is_never_declared_dead_but_a_silent_python_worker_is(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    master = make_queuer("master", 1)  # installs the schema
    # A Go worker heartbeats every 30 s: a row 90 s old is alive by Go's 2-minute rule.
    go_rid = sql.execute(
        "INSERT INTO worker (name, status, updated_at) VALUES ('go', 'RUNNING', "
        "(now() AT TIME ZONE 'UTC') - interval '90 seconds') RETURNING rid"
    ).fetchone()
    # A started Python worker whose 4 heartbeats (20 s) passed a while ago.
    py = sql.execute(
        "INSERT INTO worker (name, status, updated_at) VALUES ('py', 'RUNNING', "
        "(now() AT TIME ZONE 'UTC') - interval '30 seconds') RETURNING id, rid"
    ).fetchone()
    assert go_rid is not None and py is not None
    sql.execute(
        "INSERT INTO queuer_py_worker (worker_id, stale_after) VALUES (%s, interval '20 seconds')", (py[0],)
    )
    master.start()
    eventually(
        lambda: master.get_worker(py[1]).status is WorkerStatus.STOPPED, what="silent Python worker stopped"
    )
    assert master.get_worker(go_rid[0]).status is WorkerStatus.RUNNING


def test_start_can_opt_out_of_the_master_election(make_queuer: QueuerFactory) -> None:
    q = make_queuer("no-master", 1)
    q.add_task(echo)
    q.start(master=False)
    time.sleep(0.5)  # the first master poll would have happened at once
    assert not q.is_master and q.get_master().worker_id == 0

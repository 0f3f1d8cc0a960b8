"""What the tests share: waiting for a condition, counting rows, worker processes, small task
helpers. Test modules import from here (and fixtures come from conftest.py), never from each other."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

from queuer import DatabaseConfiguration, MasterSettings, Queuer

ROOT = Path(__file__).resolve().parent.parent
QueuerFactory = Callable[..., Queuer]

FAST_MASTER = MasterSettings(
    master_poll_interval=timedelta(seconds=0.1),
    master_lock_timeout=timedelta(seconds=1),
    worker_stale_threshold=timedelta(seconds=1),
    worker_delete_threshold=timedelta(hours=1),
)


def database_url_for(server_dsn: str, name: str) -> str:
    """A ``postgresql://`` URL (the QUEUER_DB_URL form) for database ``name`` on the test server."""
    params = psycopg.conninfo.conninfo_to_dict(server_dsn)
    user = quote(str(params.get("user") or "postgres"))
    password = f":{quote(str(params['password']))}" if params.get("password") else ""
    host = str(params.get("host") or "127.0.0.1")
    port = params.get("port") or 5432
    if host.startswith("/"):
        return f"postgresql://{user}{password}@/{name}?host={quote(host)}&port={port}"
    return f"postgresql://{user}{password}@{host}:{port}/{name}?sslmode=disable"


def config_from_url(url: str, **overrides: Any) -> DatabaseConfiguration:
    return DatabaseConfiguration.from_url(url, **overrides)


def has_pgcrypto(conn: psycopg.Connection[tuple[Any, ...]]) -> bool:
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pgcrypto'").fetchone()
    return row is not None


def eventually(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached within {timeout}s")


async def eventually_async(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """``eventually`` for a coroutine: the event loop keeps running while it waits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what} not reached within {timeout}s")


def count(sql: psycopg.Connection[Any], query: str, *params: Any) -> int:
    row = sql.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


def add_long_task(q: Queuer, name: str) -> tuple[threading.Event, threading.Event]:
    """Register an async task ``name`` that runs for a minute unless cancelled first; returns the
    events (started, cancelled) it sets."""
    started, cancelled = threading.Event(), threading.Event()

    async def long_task() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    q.add_task_with_name(long_task, name)
    return started, cancelled


class WorkerProcess:
    """A ``tests.worker_process`` child; ``rid`` is its worker row. ``master``: a fast master
    election; ``defaults``: every setting as a newcomer leaves it (the master election included)."""

    def __init__(self, url: str, name: str, master: bool = False, defaults: bool = False) -> None:
        flags = (["--master"] if master else []) + (["--defaults"] if defaults else [])
        args = [sys.executable, "-m", "tests.worker_process", url, name, *flags]
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("ready "), f"worker {name} did not start: {line!r}"
        self.rid = line.split()[1]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._close_pipe()

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def run_python(database_url: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QUEUER_DB_URL": database_url}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def echo(text: str) -> str:
    """A task that returns its argument (registered as ``echo``)."""
    return text


def explain_claim(sql: psycopg.Connection[Any], claim: Any) -> tuple[dict[str, Any], list[int]]:
    """Run ``claim`` (a ``Claim``) as the lean cycle of worker 1 would, under the cycle's session
    settings (generic plan), inside a transaction rolled back: the executed plan's root node (with
    buffers) and the ids it claimed."""
    import uuid

    from queuer.database.direct import encode_param, to_positional
    from queuer.database.job_table import JobTable, cycle_params
    from queuer.database.store import CYCLE_SETTINGS

    text, names = to_positional(JobTable("public").cycle["lean", claim.shape])
    params = cycle_params(1, uuid.uuid4(), [], [], [], claim)
    literal = ", ".join(
        "NULL" if v is None else "'" + v.decode().replace("'", "''") + "'"
        for v in (encode_param(params[n]) for n in names)
    )
    with sql.transaction(force_rollback=True):
        for name, value in CYCLE_SETTINGS:
            sql.execute(f"SET LOCAL {name} = {value}")
        sql.execute(f"PREPARE claim AS {text}")
        row = sql.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE claim({literal})").fetchone()
        taken = [r[0] for r in sql.execute("SELECT id FROM job WHERE worker_id = 1 ORDER BY id")]
        sql.execute("DEALLOCATE claim")
    assert row is not None
    return row[0][0]["Plan"], taken

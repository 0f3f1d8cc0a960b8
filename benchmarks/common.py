"""Shared helpers of the benchmarks: a scratch database, timing, and recording results."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import psycopg

from queuer import DatabaseConfiguration

# Every run, one JSON line each ({"run": "<UTC start>-<name>", "result": {...}}), oldest first.
HISTORY = Path(__file__).parent / "history.jsonl"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_dsn() -> str:
    return os.environ.get("QUEUER_BENCH_DSN", DEFAULT_DSN)


@contextmanager
def scratch_database() -> Iterator[tuple[str, DatabaseConfiguration]]:
    """A fresh database on the benchmark server, dropped afterwards: (url, configuration)."""
    name = f"queuer_bench_{uuid.uuid4().hex[:10]}"
    admin = server_dsn()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url, DatabaseConfiguration.from_url(url, sslmode="disable")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cpu_probe_ms() -> float:
    """Milliseconds for a fixed pure-Python loop (best of 5). The load average misses it when a
    shared host gives this machine slower CPU time: the same code ran 30 % slower within minutes."""
    best = float("inf")
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(2000):
            sum(range(1000))
        best = min(best, time.perf_counter() - began)
    return round(best * 1000, 1)


def cpu_ticks() -> tuple[int, int, int]:
    """(all, idle + iowait, steal) clock ticks of the whole machine so far, from ``/proc/stat``.
    Steal is time the hypervisor gave this machine's CPUs to another guest: a drain during which
    it was high did not run on a quiet machine."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return sum(values), values[3] + values[4], values[7]


def tick_share_pct(before: tuple[int, int, int], after: tuple[int, int, int], field: int) -> float:
    """The share (percent) of all ticks between two ``cpu_ticks()`` readings that went to ``field``
    (1: idle, 2: steal)."""
    return round(100 * (after[field] - before[field]) / max(1, after[0] - before[0]), 1)


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` so far, from ``/proc`` (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def backend_pids(conn: psycopg.Connection[Any]) -> list[int]:
    """The server processes serving the other sessions of ``conn``'s database (the workers')."""
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
    ).fetchall()
    return [int(r[0]) for r in rows]


def _total(pids: list[int], read: Callable[[int], float]) -> float | None:
    """``read`` summed over processes; None when one is not readable (a server on another
    machine, or processes not ours to read)."""
    try:
        return sum(read(pid) for pid in pids)
    except (FileNotFoundError, PermissionError, ProcessLookupError):
        return None


def _waited_seconds(pid: int) -> float:
    """Seconds the threads of process ``pid`` have spent so far runnable but waiting for a CPU
    (the second field of ``/proc/<pid>/task/<tid>/schedstat``, kept by the kernel to the
    nanosecond)."""
    return (
        sum(
            int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[1])
            for tid in os.listdir(f"/proc/{pid}/task")
        )
        / 1e9
    )


class Spent(NamedTuple):
    """Seconds a drain's processes spent, in all; None where the server's could not be read."""

    worker_cpu: float
    server_cpu: float | None
    waited: float | None  # workers and their server processes, runnable but without a CPU


class DrainUsage:
    """What the worker processes of a drain and their server processes use, from a reading at
    construction to ``spent()``: CPU of each side (``/proc/<pid>/stat``), and the time all of them
    were ready to run but waited for a CPU. A worker cycle is a chain of hand-overs (worker, its
    backend, the WAL flush, the worker again): with one worker process on two cores a hand-over
    nearly always finds a free CPU; with two, the four processes of the two chains wait for each
    other's CPUs, and the wait is where that shows. Read ``spent()`` before the workers stop: a
    backend gone meanwhile makes the server's figures None."""

    def __init__(self, workers: list[int], backends: list[int]) -> None:
        self._workers = workers
        self._backends = backends
        self._before = self._read()

    def _read(self) -> tuple[float, float | None, float | None]:
        return (
            sum(cpu_seconds(pid) for pid in self._workers),
            _total(self._backends, cpu_seconds),
            _total(self._workers + self._backends, _waited_seconds),
        )

    def spent(self) -> Spent:
        worker, server, waited = self._read()
        before_worker, before_server, before_waited = self._before
        return Spent(
            worker - before_worker,
            None if server is None or before_server is None else server - before_server,
            None if waited is None or before_waited is None else waited - before_waited,
        )


def per_job(seconds: float | None, jobs: int, unit: float) -> float | None:
    """``seconds`` per job in ``unit`` seconds (1e-6: us per job; 1e-3: seconds per 1,000 jobs);
    None stays None."""
    return None if seconds is None else round(seconds / jobs / unit, 3)


def pickup_latency(sent: dict[str, float], starts: dict[str, float]) -> dict[str, Any]:
    """From each job's enqueue (``sent``: rid to monotonic time) to its start (``starts``): how many
    started, and p50, p99 and the longest, in milliseconds."""
    lat = sorted((starts[k] - v) * 1000 for k, v in sent.items() if k in starts)
    return {
        "started": len(lat),
        "p50_ms": round(statistics.median(lat), 2),
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2),
        "max_ms": round(lat[-1], 2),
    }


def machine() -> dict[str, Any]:
    load1, load5, _ = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "load_1m_before": round(load1, 2),
        "load_5m_before": round(load5, 2),
        "cpu_probe_ms_before": cpu_probe_ms(),
        "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def record(name: str, data: dict[str, Any]) -> Path:
    """Print a run's figures and append them to the history, under its UTC start time and name."""
    run = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{name}"
    with HISTORY.open("a") as history:
        history.write(json.dumps({"run": run, "result": data}, separators=(",", ":")) + "\n")
    print(json.dumps(data, indent=2))
    print(f"recorded as {run} in {HISTORY}")
    return HISTORY


def noop_producer(config: Any) -> Any:
    """A queuer that enqueues the benchmarks' no-op task ``noop`` (it registers the task, so the
    name is known; it never starts, so it runs nothing)."""
    from queuer import new_queuer_with_db

    producer = new_queuer_with_db("bench-producer", 1, None, config)

    async def noop(*_: Any) -> None: ...

    producer.add_task_with_name(noop, "noop")
    return producer


def wait_until_drained(url: str, poll: float = 0.01) -> float:
    """Block until ``job`` is empty; the monotonic time it was seen empty."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        while conn.execute("SELECT 1 FROM job ORDER BY id LIMIT 1").fetchone() is not None:
            time.sleep(poll)
    return time.monotonic()

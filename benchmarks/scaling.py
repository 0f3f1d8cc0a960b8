"""Where two worker processes lose against one: the drain of run.py under four set-ups.

    python benchmarks/scaling.py [--jobs 20000] [--repeat 6]

- ``one``: one worker process, one task (run.py's one-process drain).
- ``shared``: two processes of the same task draining one table (run.py's two-process drain).
- ``split``: two processes with different tasks, their jobs interleaved in one table: the same
  table, indexes and hot pages, but no row wanted by both.
- ``separate``: two processes, each with its own database: only the server is shared (CPU, WAL,
  and PostgreSQL's notify lock, which every notifying commit holds through its WAL flush).
- ``silent``: ``shared`` with the two notify triggers dropped once the workers have started: what
  the notifications cost two processes (that lock, and each listener hearing the other worker's
  jobs). Not a set-up queuer supports: Go workers need the triggers (POLYGLOT.md §2).

Each round runs the five in turn on fresh databases (workers started and idle before the jobs are
enqueued, as in run.py); a drain is timed from the first enqueue's commit until every queue table
is empty. Besides jobs/s it records, from the enqueue's return to the end of the drain: how idle
the machine was (``/proc/stat``); CPU per job of the worker processes and of their server
processes (when the server runs here), and the time they spent ready to run but waiting for a CPU
(``common.DrainUsage``: where the two-process set-ups lose on two cores); and the WAL
flushes of the whole server with their mean fdatasync time (from ``pg_stat_wal``; the time needs
``track_wal_io_timing``, set per database when the benchmark's user may, else left out). Medians
over the rounds, and each round's ratio to ``one``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import threading
import time
from contextlib import ExitStack
from typing import Any

import psycopg
from common import (
    DrainUsage,
    backend_pids,
    cpu_probe_ms,
    cpu_ticks,
    machine,
    per_job,
    record,
    scratch_database,
    tick_share_pct,
)
from run import Worker, enqueue_queuer, pending, prepare

# Per set-up: the task of each worker process, whether each process gets its own database, and
# whether the notify triggers stay.
SETUPS: dict[str, tuple[list[str], bool, bool]] = {
    "one": (["a"], False, True),
    "shared": (["a", "a"], False, True),
    "split": (["a", "b"], False, True),
    "separate": (["a", "a"], True, True),
    "silent": (["a", "a"], False, False),
}


def wal_flushes(conn: psycopg.Connection[Any]) -> tuple[int, float]:
    """The server's WAL fsync count and their total time in ms (0 without track_wal_io_timing)."""
    row = conn.execute("SELECT wal_sync, wal_sync_time FROM pg_stat_wal").fetchone()
    assert row is not None
    return int(row[0]), float(row[1])


def drain(setup: str, n: int) -> dict[str, Any]:
    tasks, own_database, notify = SETUPS[setup]
    with ExitStack() as stack:
        databases = [stack.enter_context(scratch_database()) for _ in (tasks if own_database else [0])]
        for url, _ in databases:
            prepare("queuer", url)
            # Superuser only: the sessions opened from now on time their WAL flushes.
            with psycopg.connect(url, autocommit=True) as conn, contextlib.suppress(psycopg.Error):
                conn.execute(f'ALTER DATABASE "{url.rsplit("/", 1)[1]}" SET track_wal_io_timing = on')
        workers = [
            Worker("queuer", databases[i if own_database else 0][0], task) for i, task in enumerate(tasks)
        ]
        # Each database gets the jobs of its workers' tasks, at the same moment (one thread each).
        shares = [
            (config, tasks if not own_database else [tasks[i]]) for i, (_, config) in enumerate(databases)
        ]
        commits: list[float] = []
        conns = [stack.enter_context(psycopg.connect(url, autocommit=True)) for url, _ in databases]
        if not notify:  # after the workers' start: their schema check would create them again
            for c in conns:
                c.execute(
                    "DROP TRIGGER job_notify_event ON job; DROP TRIGGER job_archive_notify_event ON job_archive"
                )
        # The workers and their sessions, idle until the first commit.
        usage = DrainUsage([w.proc.pid for w in workers], [pid for c in conns for pid in backend_pids(c)])
        threads = [
            threading.Thread(target=lambda c=c, t=t: commits.append(enqueue_queuer(c, n // len(shares), t)))
            for c, t in shares
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # The figures below cover the drain from here (the COPY's own work is left out).
        syncs_before = wal_flushes(conns[0])
        ticks_before = cpu_ticks()
        while any(pending(c, "queuer") for c in conns):
            time.sleep(0.01)
        done = time.monotonic()
        ticks_after = cpu_ticks()
        used = usage.spent()
        ran = sum(len(w.stop()) for w in workers)
        time.sleep(0.5)  # the workers' backends have exited and reported their WAL statistics
        syncs_after = wal_flushes(conns[0])
    seconds = done - min(commits)
    syncs = syncs_after[0] - syncs_before[0]
    flushing_ms = syncs_after[1] - syncs_before[1]
    return {
        "jobs": n,
        "ran": ran,
        "jobs_per_s": round(n / seconds),
        "machine_idle_pct": tick_share_pct(ticks_before, ticks_after, 1),
        "machine_steal_pct": tick_share_pct(ticks_before, ticks_after, 2),
        "worker_cpu_us_per_job": per_job(used.worker_cpu, n, 1e-6),
        # Their server processes (None when the server is not on this machine).
        "server_cpu_us_per_job": per_job(used.server_cpu, n, 1e-6),
        "run_queue_wait_us_per_job": per_job(used.waited, n, 1e-6),
        "wal_flushes_per_1000_jobs": round(syncs / n * 1000, 1),
        "wal_flush_ms": round(flushing_ms / syncs, 3) if syncs and flushing_ms else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=6, help="rounds; medians reported")
    args = parser.parse_args()
    order = list(SETUPS)
    rounds: dict[str, list[dict[str, Any]]] = {s: [] for s in order}
    results: dict[str, Any] = {"machine": machine(), "jobs": args.jobs, "rounds": args.repeat}
    for round_no in range(args.repeat):
        rotated = order[round_no % len(order) :] + order[: round_no % len(order)]  # drift hits all alike
        for setup in rotated:
            rounds[setup].append(drain(setup, args.jobs))
            print(f"round {round_no + 1} {setup}", rounds[setup][-1], flush=True)
    summary: dict[str, Any] = {}
    for setup in order:
        figures = rounds[setup]
        summary[setup] = {
            key: statistics.median(r[key] for r in figures if r[key] is not None)
            for key in figures[0]
            if any(r[key] is not None for r in figures)
        }
        summary[setup]["ratio_to_one_per_round"] = [
            round(r["jobs_per_s"] / one["jobs_per_s"], 2)
            for r, one in zip(figures, rounds["one"], strict=True)
        ]
        summary[setup]["ratio_to_one_median"] = statistics.median(summary[setup]["ratio_to_one_per_round"])
    results["summary"] = summary
    results["rounds_detail"] = rounds
    results["machine"]["cpu_probe_ms_after"] = cpu_probe_ms()
    record("scaling", results)


if __name__ == "__main__":
    main()

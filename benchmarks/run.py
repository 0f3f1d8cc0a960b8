"""Throughput and latency of queuer and of pgqueuer 1.6, measured in the same run.

    python benchmarks/run.py [--jobs 20000] [--latency-jobs 200]

Against QUEUER_BENCH_DSN (default: the local PostgreSQL). pgqueuer is installed into its own
virtualenv (benchmarks/.venv-pgqueuer) on first use. Every workload gets a fresh database. Workers
are separate processes, started and idle before the jobs are enqueued; a drain is timed from the
enqueue's commit until the queue table is empty. The CPU of the worker processes and of their
server processes (when the server runs on this machine) and the machine's idle share are read from
/proc (Linux): on two cores, how much of the machine one worker process already keeps busy bounds
what a second one can add. Latency is
from the enqueue's commit (the moment the enqueue call returns) to the task's first line, on the
shared monotonic clock. Results are printed and appended to benchmarks/history.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from common import (
    DrainUsage,
    backend_pids,
    cpu_probe_ms,
    cpu_ticks,
    machine,
    per_job,
    pickup_latency,
    record,
    scratch_database,
    tick_share_pct,
)

from queuer import BatchJob, DatabaseConfiguration, new_queuer_with_db

HERE = Path(__file__).resolve().parent
PGQ_VENV = HERE / ".venv-pgqueuer"
PGQ_PYTHON = PGQ_VENV / "bin" / "python"
CONCURRENCY = 10


def ensure_pgqueuer() -> None:
    if PGQ_PYTHON.exists():
        return
    subprocess.run([sys.executable, "-m", "venv", str(PGQ_VENV)], check=True)
    subprocess.run([str(PGQ_PYTHON), "-m", "pip", "install", "-q", "pgqueuer==1.6.*", "asyncpg"], check=True)


class Worker:
    """A worker process, started and idle. ``python``: the interpreter of a queuer worker (another
    install of queuer, for ``ab.py``)."""

    def __init__(
        self,
        system: str,
        url: str,
        task: str = "noop",
        python: str = sys.executable,
        env: dict[str, str] | None = None,
    ) -> None:
        self.record = tempfile.mktemp(suffix=".json")
        if system == "queuer":
            args = [python, str(HERE / "queuer_side.py"), url, str(CONCURRENCY), self.record, task]
        else:
            args = [
                str(PGQ_PYTHON),
                str(HERE / "pgqueuer_side.py"),
                "worker",
                url,
                str(CONCURRENCY),
                self.record,
            ]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready", f"{system} worker did not start"

    def stop(self) -> dict[str, float]:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        starts: dict[str, float] = {}
        with open(self.record) as f:
            if f.read(1) == "{":  # pgqueuer's side writes one JSON object at the end
                f.seek(0)
                starts = json.load(f)
            else:  # queuer's side a line per start as it happens
                f.seek(0)
                for line in f:
                    rid, at = line.split("\t")
                    starts[rid] = float(at)
        os.unlink(self.record)
        return starts


def pending(conn: psycopg.Connection[Any], system: str) -> bool:
    """Whether the queue table still holds a row. Cheap on purpose, since it runs every 10 ms
    beside the workers being measured: a count(*) of 20,000 rows every 5 ms took a third of a
    core; a bare ``LIMIT 1`` walks the dead rows a drain leaves at the front of the heap (0.4 to
    1.0 ms per poll late in a drain), the first entry of the primary key does not (0.25 to 0.35 ms,
    round trip included)."""
    table = "job" if system == "queuer" else "pgqueuer"
    return conn.execute(f"SELECT 1 FROM {table} ORDER BY id LIMIT 1").fetchone() is not None


def prepare(system: str, url: str, python: str = sys.executable) -> None:
    """Install the system's schema; for queuer with ``python``'s install (an A/B's base installs
    the indexes its own claim walks)."""
    if system == "queuer":
        subprocess.run([python, "-m", "queuer", "init", "--dsn", url], check=True, capture_output=True)
    else:
        subprocess.run([str(PGQ_PYTHON), str(HERE / "pgqueuer_side.py"), "install", url], check=True)


def enqueue_queuer(config: DatabaseConfiguration, n: int, tasks: Sequence[str] = ("noop",)) -> float:
    """``n`` no-op queuer jobs in one COPY, the task names taking turns; the monotonic time of
    the commit."""
    q = new_queuer_with_db("bench-producer", 1, None, config)
    for name in sorted(set(tasks)):

        async def noop() -> None: ...

        q.add_task_with_name(noop, name)
    q.add_jobs([BatchJob(tasks[i % len(tasks)]) for i in range(n)])
    committed = time.monotonic()
    q.stop()
    return committed


def enqueue_with(python: str) -> Callable[[str, DatabaseConfiguration, int], float]:
    """Enqueue with another install's queuer, so that its schema is the one its worker expects."""

    def enqueue(url: str, config: DatabaseConfiguration, n: int) -> float:
        out = subprocess.run(
            [python, str(HERE / "queuer_side.py"), "enqueue", url, str(n)],
            check=True,
            capture_output=True,
            text=True,
        )
        return float(out.stdout.strip().splitlines()[-1])

    return enqueue


def enqueue(system: str, url: str, config: DatabaseConfiguration, n: int) -> float:
    """Enqueue ``n`` jobs in one batch; the monotonic time of the commit."""
    if system == "queuer":
        return enqueue_queuer(config, n)
    out = subprocess.run(
        [str(PGQ_PYTHON), str(HERE / "pgqueuer_side.py"), "enqueue", url, str(n)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip())


def drain(
    system: str,
    processes: int,
    n: int,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
    enqueue_jobs: Callable[[str, DatabaseConfiguration, int], float] | None = None,
) -> dict[str, Any]:
    """Time ``n`` jobs from the enqueue's commit until ``job`` is empty. ``env``: for the worker
    processes (queuer_side.py's settings); ``enqueue_jobs``: another way to write the jobs."""
    with scratch_database() as (url, config):
        prepare(system, url, python)
        workers = [Worker(system, url, python=python, env=env) for _ in range(processes)]
        with psycopg.connect(url, autocommit=True) as conn:
            # The workers' sessions (the enqueue's comes and goes); all idle until the commit.
            usage = DrainUsage([w.proc.pid for w in workers], backend_pids(conn))
            committed = enqueue_jobs(url, config, n) if enqueue_jobs else enqueue(system, url, config, n)
            ticks_before = cpu_ticks()  # the machine's idle share: from the enqueue's return
            while pending(conn, system):
                time.sleep(0.01)
            done = time.monotonic()
            ticks_after = cpu_ticks()
            spent = usage.spent()
        ran = sum(len(w.stop()) for w in workers)
    seconds = done - committed
    return {
        "jobs": n,
        "processes": processes,
        "ran": ran,
        "seconds": round(seconds, 3),
        "jobs_per_s": round(n / seconds),
        "worker_cpu_s_per_1000_jobs": per_job(spent.worker_cpu, n, 1e-3),
        # The workers' server processes (None when the server is not on this machine).
        "server_cpu_s_per_1000_jobs": per_job(spent.server_cpu, n, 1e-3),
        # Time the workers and their server processes were ready to run but had no CPU.
        "run_queue_wait_us_per_job": per_job(spent.waited, n, 1e-6),
        "machine_idle_pct": tick_share_pct(ticks_before, ticks_after, 1),
        "machine_steal_pct": tick_share_pct(ticks_before, ticks_after, 2),
    }


def latency(system: str, count: int, gap: float) -> dict[str, Any]:
    with scratch_database() as (url, config):
        prepare(system, url)
        worker = Worker(system, url)
        sent: dict[str, float] = {}
        if system == "queuer":
            q = new_queuer_with_db("bench-producer", 1, None, config)

            async def noop() -> None: ...

            q.add_task(noop)
            for _ in range(count):
                rid = q.add_job(noop).rid
                sent[str(rid)] = time.monotonic()  # the commit is acknowledged
                time.sleep(gap)
            q.stop()
        else:
            path = tempfile.mktemp(suffix=".json")
            subprocess.run(
                [str(PGQ_PYTHON), str(HERE / "pgqueuer_side.py"), "produce", url, str(count), str(gap), path],
                check=True,
            )
            with open(path) as f:
                sent = json.load(f)
            os.unlink(path)
        time.sleep(0.5)  # the last job's start
        starts = worker.stop()
    return {"jobs": count, **pickup_latency(sent, starts)}


def _medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per workload and figure, the median over the rounds."""
    out: dict[str, Any] = {}
    for workload in rounds[0]:
        out[workload] = {}
        for key in rounds[0][workload]:
            values = [r[workload][key] for r in rounds if r[workload][key] is not None]
            out[workload][key] = round(statistics.median(values), 3) if values else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--systems", default="queuer,pgqueuer")
    parser.add_argument("--repeat", type=int, default=3, help="rounds, systems alternating; medians reported")
    args = parser.parse_args()
    systems = args.systems.split(",")
    if "pgqueuer" in systems:
        ensure_pgqueuer()
    results: dict[str, Any] = {"machine": machine(), "max_concurrency": CONCURRENCY, "rounds": args.repeat}
    rounds: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
    for round_no in range(args.repeat):
        for system in systems:  # alternating, so drifting machine load hits both alike
            measured = {
                "machine": {"cpu_probe_ms_at_start": cpu_probe_ms()},  # how fast it was as the round began
                "drain_1_process": drain(system, 1, args.jobs),
                "drain_2_processes": drain(system, 2, args.jobs),
                "latency": latency(system, args.latency_jobs, 0.05),
            }
            rounds[system].append(measured)
            print(f"round {round_no + 1} {system}", json.dumps(measured), flush=True)
    for system in systems:
        results[system] = _medians(rounds[system])
        results[system]["rounds"] = rounds[system]
    if {"queuer", "pgqueuer"} <= set(systems):
        q, p = results["queuer"], results["pgqueuer"]
        results["ratios"] = {
            "drain_1_process_vs_pgqueuer": round(
                q["drain_1_process"]["jobs_per_s"] / p["drain_1_process"]["jobs_per_s"], 2
            ),
            "drain_2_processes_vs_pgqueuer": round(
                q["drain_2_processes"]["jobs_per_s"] / p["drain_2_processes"]["jobs_per_s"], 2
            ),
            "queuer_2_vs_1_process": round(
                q["drain_2_processes"]["jobs_per_s"] / q["drain_1_process"]["jobs_per_s"], 2
            ),
        }
    for system in systems:  # a round measures both process counts: its own ratio is the paired one
        per_round = [
            r["drain_2_processes"]["jobs_per_s"] / r["drain_1_process"]["jobs_per_s"] for r in rounds[system]
        ]
        results[system]["two_vs_one_process_per_round"] = [round(x, 2) for x in per_round]
        results[system]["two_vs_one_process_median_of_rounds"] = round(statistics.median(per_round), 2)
    results["machine"]["load_1m_after"] = round(os.getloadavg()[0], 2)
    results["machine"]["cpu_probe_ms_after"] = cpu_probe_ms()
    record("throughput", results)


if __name__ == "__main__":
    main()

"""A/B of two installs of queuer: the drain of run.py, one and two processes, versions alternating.

    python benchmarks/ab.py BASE_PYTHON NEW_PYTHON [--repeat 4] [--jobs 20000]

Each PYTHON is an interpreter with a (non-editable) install of the version to measure, e.g. a
virtualenv made with ``pip install`` of a ``git worktree`` of the old commit. The workers run
``queuer_side.py`` under it, from a neutral directory so that no checkout shadows the install.
Per round and version: jobs/s and worker CPU per job for one and two processes, the steal share of
each drain, and the round's two-to-one ratio; medians at the end. Results go to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from typing import Any

import psycopg
from common import cpu_probe_ms, cpu_ticks, machine, record, scratch_database, tick_share_pct
from run import CONCURRENCY, HERE, cpu_seconds, enqueue_queuer, pending, prepare


def drain(python: str, processes: int, n: int) -> dict[str, Any]:
    with scratch_database() as (url, config):
        prepare("queuer", url)
        workers = []
        for _ in range(processes):
            path = tempfile.mktemp(suffix=".json")
            proc = subprocess.Popen(
                [python, str(HERE / "queuer_side.py"), url, str(CONCURRENCY), path],
                stdout=subprocess.PIPE,
                text=True,
                cwd=tempfile.gettempdir(),
            )
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            workers.append((proc, path))
        cpu_before = sum(cpu_seconds(p.pid) for p, _ in workers)
        ticks_before = cpu_ticks()
        committed = enqueue_queuer(config, n)
        with psycopg.connect(url, autocommit=True) as conn:
            while pending(conn, "queuer"):
                time.sleep(0.01)
        seconds = time.monotonic() - committed
        ticks_after = cpu_ticks()
        cpu = sum(cpu_seconds(p.pid) for p, _ in workers) - cpu_before
        ran = 0
        for proc, path in workers:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            with open(path) as f:
                ran += len(json.load(f))
            os.unlink(path)
    return {
        "ran": ran,
        "jobs_per_s": round(n / seconds),
        "worker_cpu_us_per_job": round(cpu / n * 1e6, 1),
        "machine_steal_pct": tick_share_pct(ticks_before, ticks_after, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_python")
    parser.add_argument("new_python")
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=20_000)
    args = parser.parse_args()
    versions = {"base": args.base_python, "new": args.new_python}
    rounds: dict[str, list[dict[str, Any]]] = {v: [] for v in versions}
    results: dict[str, Any] = {"machine": machine(), "jobs": args.jobs, "versions": versions}
    for round_no in range(args.repeat):
        probe = cpu_probe_ms()
        order = list(versions) if round_no % 2 == 0 else list(versions)[::-1]
        for version in order:
            one = drain(versions[version], 1, args.jobs)
            two = drain(versions[version], 2, args.jobs)
            ratio = round(two["jobs_per_s"] / one["jobs_per_s"], 2)
            rounds[version].append({"cpu_probe_ms": probe, "one": one, "two": two, "ratio": ratio})
            print(f"round {round_no + 1} {version}", json.dumps(rounds[version][-1]), flush=True)
    for version, figures in rounds.items():
        one = statistics.median(r["one"]["jobs_per_s"] for r in figures)
        two = statistics.median(r["two"]["jobs_per_s"] for r in figures)
        results[version] = {
            "one_process_jobs_per_s": one,
            "two_processes_jobs_per_s": two,
            "ratio_of_medians": round(two / one, 2),
            "median_of_round_ratios": statistics.median(r["ratio"] for r in figures),
            "worker_cpu_us_per_job_one_process": statistics.median(
                r["one"]["worker_cpu_us_per_job"] for r in figures
            ),
            "rounds": figures,
        }
    results["machine"]["cpu_probe_ms_after"] = cpu_probe_ms()
    record("ab", results)


if __name__ == "__main__":
    main()

"""A/B of two installs of queuer: the drain of run.py, one and two processes, versions alternating.

    python benchmarks/ab.py BASE_PYTHON NEW_PYTHON [--repeat 4] [--jobs 20000]

Each PYTHON is an interpreter with a (non-editable) install of the version to measure, e.g. a
virtualenv made with ``pip install`` of a ``git worktree`` of the old commit; the workers of
run.py's drain run ``queuer_side.py`` under it, and so does the enqueue (a version's own schema). Per
round and version: jobs/s and worker CPU per 1,000 jobs for one and two processes, the steal share
of each drain, and the round's two-to-one ratio; medians at the end. Results are appended
to benchmarks/history.jsonl.
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from common import cpu_probe_ms, machine, record
from run import drain, enqueue_with


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
            # Each version installs its schema and writes its jobs itself (its own claim indexes).
            mine = enqueue_with(versions[version])
            one = drain("queuer", 1, args.jobs, python=versions[version], enqueue_jobs=mine)
            two = drain("queuer", 2, args.jobs, python=versions[version], enqueue_jobs=mine)
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
            "worker_cpu_s_per_1000_jobs_one_process": statistics.median(
                r["one"]["worker_cpu_s_per_1000_jobs"] for r in figures
            ),
            "rounds": figures,
        }
    results["machine"]["cpu_probe_ms_after"] = cpu_probe_ms()
    record("ab", results)


if __name__ == "__main__":
    main()

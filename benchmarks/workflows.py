"""Workflows under load: a 10,000-job group against 10,000 plain jobs, and a chain of 1,000 steps.

    python benchmarks/workflows.py [--repeat 3] [--jobs 10000] [--steps 1000]

One worker process (run.py's, 10 slots, no-op async task). The group and the plain jobs are drained
in the same run, alternating; each drain is timed from its first job's start (the worker's own
monotonic clock) until ``job`` is empty, so that the producer's reading back of a 10,000-member
group does not count. The chain is timed from the enqueue's return until its last step ended.
Results are appended to benchmarks/history.jsonl.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from common import machine, noop_producer, record, scratch_database, wait_until_drained
from run import Worker, prepare

from queuer import BatchJob, Step


def drain(kind: str, n: int) -> dict[str, Any]:
    with scratch_database() as (url, config):
        prepare("queuer", url)
        worker = Worker("queuer", url)
        producer = noop_producer(config)
        if kind == "group":
            producer.add_group([Step("noop") for _ in range(n)])
        else:
            producer.add_jobs([BatchJob("noop") for _ in range(n)])
        done = wait_until_drained(url)
        producer.stop()
        starts = worker.stop()
    seconds = done - min(starts.values())
    return {
        "kind": kind,
        "jobs": n,
        "ran": len(starts),
        "seconds": round(seconds, 3),
        "jobs_per_s": round(n / seconds),
    }


def chain(steps: int) -> dict[str, Any]:
    with scratch_database() as (url, config):
        prepare("queuer", url)
        worker = Worker("queuer", url)
        producer = noop_producer(config)
        started = time.monotonic()
        made = producer.add_chain([Step("noop") for _ in range(steps)])
        enqueued = time.monotonic()
        done = producer.wait_for_workflow(made.rid, 600)
        ended = time.monotonic()
        producer.stop()
        worker.stop()
    seconds = ended - enqueued
    return {
        "steps": steps,
        "status": done.status.value,
        "enqueue_seconds": round(enqueued - started, 3),
        "seconds": round(seconds, 3),
        "steps_per_s": round(steps / seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=1_000)
    args = parser.parse_args()
    rounds: dict[str, list[dict[str, Any]]] = {"plain": [], "group": []}
    chains = []
    for round_no in range(args.repeat):
        order = ["plain", "group"] if round_no % 2 == 0 else ["group", "plain"]
        for kind in order:
            result = drain(kind, args.jobs)
            rounds[kind].append(result)
            print(
                f"round {round_no + 1} {kind}: {result['jobs_per_s']} jobs/s ({result['ran']} ran)",
                flush=True,
            )
        chains.append(chain(args.steps))
        print(f"round {round_no + 1} chain: {chains[-1]['steps_per_s']} steps/s", flush=True)
    plain = statistics.median(r["jobs_per_s"] for r in rounds["plain"])
    group = statistics.median(r["jobs_per_s"] for r in rounds["group"])
    steps = statistics.median(c["steps_per_s"] for c in chains)
    print(f"group {group:.0f} jobs/s = {group / plain:.1%} of plain {plain:.0f}; chain {steps:.0f} steps/s")
    record(
        "workflows",
        {
            "machine": machine(),
            "rounds": args.repeat,
            "plain": {"jobs_per_s_median": plain, "rounds": rounds["plain"]},
            "group": {
                "jobs_per_s_median": group,
                "of_plain": round(group / plain, 3),
                "rounds": rounds["group"],
            },
            "chain": {"steps_per_s_median": steps, "rounds": chains},
        },
    )


if __name__ == "__main__":
    main()

"""A queuer worker process for the benchmarks: ``python queuer_side.py URL CONCURRENCY FILE [TASK]``.

Runs no-op async jobs of task TASK (default ``noop``) until SIGTERM, then writes each job's start
time (monotonic) to FILE. ``QUEUER_BENCH_QUEUES`` (comma-separated): the queues it consumes;
``QUEUER_BENCH_SLEEP_MS``: each job sleeps that long.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time
from typing import Any

from queuer import DatabaseConfiguration, current_job_rid, new_queuer_with_db


def main() -> None:
    url, concurrency, record = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    task = sys.argv[4] if len(sys.argv) > 4 else "noop"
    queues = os.environ.get("QUEUER_BENCH_QUEUES")
    sleep = float(os.environ.get("QUEUER_BENCH_SLEEP_MS") or 0) / 1000
    q = new_queuer_with_db(
        "bench-worker",
        concurrency,
        None,
        DatabaseConfiguration.from_url(url, sslmode="disable"),
        **({"queues": queues.split(",")} if queues else {}),
    )
    starts: dict[str, float] = {}

    async def noop() -> None:
        starts[str(current_job_rid.get())] = time.monotonic()
        if sleep:
            await asyncio.sleep(sleep)

    q.add_task_with_name(noop, task)
    stop = threading.Event()

    def on_term(*_: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    q.start()
    print("ready", flush=True)
    stop.wait()
    q.stop()
    with open(record, "w") as f:
        json.dump(starts, f)


if __name__ == "__main__":
    main()

"""A queuer worker process for the benchmarks: ``python queuer_side.py URL CONCURRENCY FILE [TASK]``.

Runs no-op async jobs of task TASK (default ``noop``) until SIGTERM, writing each job's rid and start
time (monotonic) to FILE as it starts, a line each: a structure growing in memory would stall the
worker it measures (a dict of millions of starts took hundreds of milliseconds to resize). ``QUEUER_BENCH_QUEUES`` (comma-separated): the queues it consumes;
``QUEUER_BENCH_SLEEP_MS``: each job sleeps that long.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from typing import Any

from queuer import BatchJob, DatabaseConfiguration, current_job_rid, new_queuer_with_db


def enqueue(url: str, n: int) -> None:
    """``queuer_side.py enqueue URL N``: N no-op jobs in one COPY with this interpreter's queuer
    (another install's, for a fair A/B); prints the commit's monotonic time."""
    q = new_queuer_with_db("bench-producer", 1, None, DatabaseConfiguration.from_url(url, sslmode="disable"))

    async def noop() -> None: ...

    q.add_task_with_name(noop, "noop")
    q.add_jobs([BatchJob("noop") for _ in range(n)])
    print(time.monotonic(), flush=True)
    q.stop()


def main() -> None:
    if sys.argv[1] == "enqueue":
        enqueue(sys.argv[2], int(sys.argv[3]))
        return
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
    out = open(record, "w", buffering=1 << 20)  # noqa: SIM115 (closed after the worker stops)

    async def noop(*_: Any) -> None:
        out.write(f"{current_job_rid.get()}\t{time.monotonic()}\n")
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
    out.close()


if __name__ == "__main__":
    main()

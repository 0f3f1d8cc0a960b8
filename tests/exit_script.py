"""A worker that ends without ``stop()``: ``python -m tests.exit_script MODE`` with QUEUER_DB_URL set.

It starts, runs a long job, prints ``running WORKER_RID JOB_RID`` and then, by MODE: ``end`` lets
the script end, ``raise`` raises an uncaught exception, ``wait`` sleeps until a signal arrives.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time

from queuer import new_queuer


def main() -> None:
    mode = sys.argv[1]
    q = new_queuer("exit-script", 2, heartbeat_interval=0.5, poll_interval=0.5)
    started = threading.Event()

    async def long_job() -> None:
        started.set()
        await asyncio.sleep(300)

    q.add_task(long_job)
    q.start(master=False)
    job = q.add_job(long_job)
    if not started.wait(30):
        raise SystemExit("the job never started")
    print(f"running {q.worker.rid} {job.rid}", flush=True)
    if mode == "raise":
        raise RuntimeError("the application failed")
    if mode == "wait":
        time.sleep(300)


if __name__ == "__main__":
    main()

"""A worker process for the crash tests: ``python -m tests.worker_process URL NAME [--master|--defaults]``.

``--master`` takes part in a fast master election; ``--defaults`` runs with every default setting
(heartbeat, poll, master election) as a newcomer's worker would; neither: no master.

Its task ``crash_work`` records every run in table ``runs`` (on its own connection, committed
before it returns), so the tests can count executions after killing processes.
"""

from __future__ import annotations

import signal
import sys
import time
from datetime import timedelta
from typing import Any

import psycopg

from queuer import DatabaseConfiguration, MasterSettings, new_queuer_with_db

FAST_MASTER = MasterSettings(
    master_poll_interval=timedelta(seconds=0.2),
    master_lock_timeout=timedelta(seconds=1),
    worker_stale_threshold=timedelta(seconds=1),
    worker_delete_threshold=timedelta(hours=1),
)


def main() -> None:
    url, name = sys.argv[1], sys.argv[2]
    defaults = "--defaults" in sys.argv
    timing: dict[str, Any] = {} if defaults else {"heartbeat_interval": 0.2, "poll_interval": 0.5}
    q = new_queuer_with_db(name, 4, None, DatabaseConfiguration.from_url(url), **timing)
    runs = [psycopg.connect(url, autocommit=True)]

    def record(i: int) -> None:
        """One row per run; a connection lost to a server restart is made again once."""
        try:
            runs[0].execute("INSERT INTO runs (i, worker) VALUES (%s, %s)", (i, name))
        except psycopg.OperationalError:
            runs[0] = psycopg.connect(url, autocommit=True)
            runs[0].execute("INSERT INTO runs (i, worker) VALUES (%s, %s)", (i, name))

    def crash_work(i: int, seconds: float) -> int:
        record(i)
        time.sleep(seconds)  # the work itself
        return i

    q.add_task(crash_work)
    if defaults:
        q.start()
    else:
        q.start(FAST_MASTER if "--master" in sys.argv else None, master="--master" in sys.argv)
    print(f"ready {q.worker.rid}", flush=True)

    def on_signal(*_: Any) -> None:
        q.stop(grace_seconds=10)

    signal.signal(signal.SIGTERM, on_signal)
    q.wait_until_stopped()
    q.stop()


if __name__ == "__main__":
    main()

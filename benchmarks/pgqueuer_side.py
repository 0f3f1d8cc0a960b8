"""pgqueuer's side of the comparison; runs in pgqueuer's own virtualenv (see run.py).

python pgqueuer_side.py install URL
python pgqueuer_side.py enqueue URL N                 # prints the monotonic time after commit
python pgqueuer_side.py worker URL CONCURRENCY FILE   # until SIGTERM; task start times to FILE
python pgqueuer_side.py produce URL COUNT GAP FILE    # single jobs GAP seconds apart
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from datetime import timedelta

import asyncpg
from pgqueuer import QueueManager
from pgqueuer.queries import Queries


async def install(url: str) -> None:
    conn = await asyncpg.connect(url)
    await Queries.from_asyncpg_connection(conn).install()
    await conn.close()


async def enqueue(url: str, n: int) -> None:
    conn = await asyncpg.connect(url)
    queries = Queries.from_asyncpg_connection(conn)
    await queries.enqueue(["noop"] * n, [None] * n, [0] * n)
    print(time.monotonic(), flush=True)
    await conn.close()


async def worker(url: str, concurrency: int, record: str) -> None:
    conn = await asyncpg.connect(url)
    qm = QueueManager(Queries.from_asyncpg_connection(conn))
    starts: dict[int, float] = {}

    @qm.entrypoint("noop")
    async def noop(job: object) -> None:
        starts[int(job.id)] = time.monotonic()  # type: ignore[attr-defined]

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, qm.shutdown.set)
    print("ready", flush=True)
    batch = max(1, concurrency // 2)  # pgqueuer requires max_concurrent_tasks >= 2 x batch_size
    await qm.run(batch_size=batch, max_concurrent_tasks=concurrency, dequeue_timeout=timedelta(seconds=5))
    with open(record, "w") as f:
        json.dump(starts, f)
    await conn.close()


async def produce(url: str, count: int, gap: float, record: str) -> None:
    conn = await asyncpg.connect(url)
    queries = Queries.from_asyncpg_connection(conn)
    sent: dict[int, float] = {}
    for _ in range(count):
        ids = await queries.enqueue("noop", None)
        sent[int(ids[0])] = time.monotonic()  # the commit is acknowledged
        await asyncio.sleep(gap)
    with open(record, "w") as f:
        json.dump(sent, f)
    await conn.close()


def main() -> None:
    command, url, *rest = sys.argv[1:]
    if command == "install":
        asyncio.run(install(url))
    elif command == "enqueue":
        asyncio.run(enqueue(url, int(rest[0])))
    elif command == "worker":
        asyncio.run(worker(url, int(rest[0]), rest[1]))
    elif command == "produce":
        asyncio.run(produce(url, int(rest[0]), float(rest[1]), rest[2]))


if __name__ == "__main__":
    main()

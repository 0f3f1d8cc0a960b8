"""Many producers at once, as a web app's requests: 64 coroutines calling ``add_job_async`` and
16 threads calling ``add_job``, each one job at a time, every call returning after its commit:
both at once on one client (``together``), and each alone.

    python benchmarks/producers.py [--jobs 20000] [--repeat 3]

Also one thread alone, for the single-caller rate. The task is registered on the producer, so no
worker is needed; the jobs stay queued. Results are appended to benchmarks/history.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from typing import Any

from common import machine, record, scratch_database

import queuer


def _client(config: Any) -> Any:
    client = queuer.Queuer("bench-producer", 1, db_config=config, pool_size=8)

    def noop() -> None: ...

    client.add_task_with_name(noop, "noop")
    return client


def coroutines(config: Any, n: int, callers: int = 64) -> float:
    client = _client(config)

    async def run() -> float:
        remaining = [n]

        async def caller() -> None:
            while remaining[0] > 0:
                remaining[0] -= 1
                await client.add_job_async("noop")

        start = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(callers)))
        return time.perf_counter() - start

    seconds = asyncio.run(run())
    client.stop()
    return n / seconds


def threads(config: Any, n: int, callers: int = 16) -> float:
    client = _client(config)
    lock = threading.Lock()
    remaining = [n]

    def caller() -> None:
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            client.add_job("noop")

    workers = [threading.Thread(target=caller) for _ in range(callers)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    seconds = time.perf_counter() - start
    client.stop()
    return n / seconds


def together(config: Any, n: int) -> float:
    """64 coroutines and 16 threads at the same time, on one client: the jobs of both per second."""
    client = _client(config)
    lock = threading.Lock()
    remaining = [n]

    def take() -> bool:
        with lock:
            remaining[0] -= 1
            return remaining[0] >= 0

    def thread_caller() -> None:
        while take():
            client.add_job("noop")

    async def coroutine_callers() -> None:
        async def caller() -> None:
            while take():
                await client.add_job_async("noop")

        await asyncio.gather(*(caller() for _ in range(64)))

    threads_ = [threading.Thread(target=thread_caller) for _ in range(16)]
    start = time.perf_counter()
    for t in threads_:
        t.start()
    asyncio.run(coroutine_callers())
    for t in threads_:
        t.join()
    seconds = time.perf_counter() - start
    client.stop()
    return n / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rounds: dict[str, list[float]] = {
        "together_64_16": [],
        "coroutines_64": [],
        "threads_16": [],
        "one_thread": [],
    }
    for round_no in range(args.repeat):
        for name, run, n in (
            ("together_64_16", together, args.jobs),
            ("coroutines_64", coroutines, args.jobs),
            ("threads_16", threads, args.jobs),
            ("one_thread", lambda c, k: threads(c, k, 1), args.jobs // 5),
        ):
            with scratch_database() as (_, config):
                rate = run(config, n)
            rounds[name].append(round(rate))
            print(f"round {round_no + 1} {name}: {rate:.0f} jobs/s", flush=True)
    medians = {name: statistics.median(r) for name, r in rounds.items()}
    print({name: f"{m:.0f} jobs/s" for name, m in medians.items()})
    record("producers", {"machine": machine(), "jobs": args.jobs, "medians": medians, "rounds": rounds})


if __name__ == "__main__":
    main()

"""Hours of load: producers at 70 % of what one worker drains, for a while.

    python benchmarks/soak.py [--minutes 3] [--share 0.7]

First a 20,000-job drain measures what one worker process drains here; then a producer enqueues
at ``share`` of that rate (small batches every 10 ms) for ``--minutes`` (30 for the real soak, 3 by
default as a smoke run) while one worker process runs. Reported: pickup latency (the enqueue's
commit to the task's start) p50/p99 in the first and the last window (5 minutes, or a third of a
shorter run), the size of ``job`` on disk over time, and that every job ran exactly once. Results
are appended to benchmarks/history.jsonl.
"""

from __future__ import annotations

import argparse
import time
from typing import Any
from uuid import UUID

import psycopg
from common import machine, noop_producer, record, scratch_database
from psycopg import sql
from run import Worker, drain, prepare

from queuer import BatchJob


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


def soak(minutes: float, rate: float, log_slow_ms: int | None = None) -> dict[str, Any]:
    with scratch_database() as (url, config):
        prepare("queuer", url)
        if log_slow_ms is not None:  # the server logs every statement of this database slower than that
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("ALTER DATABASE {} SET log_min_duration_statement = {}").format(
                        sql.Identifier(conn.info.dbname), sql.Literal(log_slow_ms)
                    )
                )
        worker = Worker("queuer", url)
        producer = noop_producer(config)
        # Per tick: its commit time and its rids as one bytes object. What the producer keeps must
        # neither be resized whole (a dict of millions of rids stalled the producer while it
        # resized) nor be seen by the garbage collector (millions of UUID objects made each full
        # collection take seconds): either stall comes back as a burst of jobs that then wait.
        ticks: list[tuple[float, bytes]] = []
        sizes: list[tuple[float, int]] = []
        # (second, job vacuums, checkpoints, archive rows, jobs waiting, WAL bytes, IO pressure %)
        events: list[tuple[float, int, int, int, int, int, float]] = []
        per_tick = max(1, round(rate / 100))
        start = time.monotonic()
        end = start + minutes * 60
        next_tick = start
        with psycopg.connect(url, autocommit=True) as conn:
            last_size = 0.0
            while time.monotonic() < end:
                rids = producer.add_jobs([BatchJob("noop") for _ in range(per_tick)])
                committed = time.monotonic()
                ticks.append((committed, b"".join(rid.bytes for rid in rids)))
                if committed - last_size >= 10:
                    row = conn.execute("SELECT pg_total_relation_size('job')").fetchone()
                    sizes.append((round(committed - start), row[0] if row else 0))
                    events.append((round(committed - start), *_counters(conn)))
                    last_size = committed
                next_tick += 0.01
                time.sleep(max(0.0, next_tick - time.monotonic()))
            while conn.execute("SELECT 1 FROM job ORDER BY id LIMIT 1").fetchone() is not None:
                time.sleep(0.05)
            archived = conn.execute(
                "SELECT count(*), count(DISTINCT rid), count(*) FILTER (WHERE status = 'SUCCEEDED') FROM job_archive"
            ).fetchone()
        producer.stop()
        starts = worker.stop()
    enqueued = {str(UUID(bytes=blob[i : i + 16])): at for at, blob in ticks for i in range(0, len(blob), 16)}
    window = min(300.0, minutes * 60 / 3)
    first = [starts[r] - t for r, t in enqueued.items() if t - start < window and r in starts]
    last = [starts[r] - t for r, t in enqueued.items() if t > end - window and r in starts]
    assert archived is not None
    return {
        "minutes": minutes,
        "rate_per_s": round(rate),
        "enqueued": len(enqueued),
        "archived": archived[0],
        "archived_distinct": archived[1],
        "succeeded": archived[2],
        "started": len(starts),
        "first_window": {"p50_ms": _pct(first, 0.5), "p99_ms": _pct(first, 0.99), "jobs": len(first)},
        "last_window": {"p50_ms": _pct(last, 0.5), "p99_ms": _pct(last, 0.99), "jobs": len(last)},
        "p99_last_of_first": round(_pct(last, 0.99) / _pct(first, 0.99), 2),
        "job_bytes": sizes,
        "timeline": _timeline(enqueued, starts, start, events),
    }


def _counters(conn: psycopg.Connection[Any]) -> tuple[int, int, int, int, int, float]:
    """What may stall the hot path, counted so far: VACUUMs of ``job`` (the master's), the server's
    checkpoints, the archive's rows (an estimate: its live tuples); and now: the jobs waiting (a
    backlog means the worker fell behind), the WAL position, and the share of the last 10 s in
    which some task of this machine waited for IO (the kernel's pressure stall information)."""
    row = conn.execute(
        "SELECT (SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'job'), "
        "(SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter), "
        "(SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = 'job_archive'), "
        "(SELECT count(*) FROM job WHERE status = 'QUEUED'), "
        "pg_current_wal_lsn() - '0/0'::pg_lsn"
    ).fetchone()
    assert row is not None
    return int(row[0] or 0), int(row[1] or 0), int(row[2] or 0), int(row[3]), int(row[4]), _io_pressure()


def _io_pressure() -> float:
    try:
        with open("/proc/pressure/io") as f:
            return float(f.readline().split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return -1.0


def _timeline(
    enqueued: dict[str, float],
    starts: dict[str, float],
    start: float,
    events: list[tuple[float, int, int, int]],
) -> list[dict[str, Any]]:
    """Pickup p50/p99 per 10-second window, beside the vacuums and checkpoints that began in it."""
    windows: dict[int, list[float]] = {}
    for rid, at in enqueued.items():
        if rid in starts:
            windows.setdefault(int((at - start) // 10), []).append(starts[rid] - at)
    marks = {int(second // 10): rest for second, *rest in events}
    rows: list[dict[str, Any]] = []
    previous: list[Any] = [0, 0, 0, 0, 0, 0.0]
    for index in sorted(windows):
        counters = marks.get(index + 1, previous)
        rows.append(
            {
                "second": index * 10,
                "p50_ms": _pct(windows[index], 0.5),
                "p99_ms": _pct(windows[index], 0.99),
                "vacuums": counters[0] - previous[0],
                "checkpoints": counters[1] - previous[1],
                "archive_rows": counters[2],
                "waiting": counters[3],
                "wal_mb": round((counters[4] - previous[4]) / 1e6) if previous[4] else None,
                "io_pressure_pct": counters[5],
            }
        )
        previous = list(counters)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--share", type=float, default=0.7)
    parser.add_argument(
        "--log-slow-ms", type=int, help="have the server log the statements slower than this (its log file)"
    )
    args = parser.parse_args()
    capacity = drain("queuer", 1, 20_000)["jobs_per_s"]
    result = soak(args.minutes, args.share * capacity, args.log_slow_ms)
    result["drain_capacity_jobs_per_s"] = capacity
    print({k: v for k, v in result.items() if k not in ("job_bytes", "timeline")})
    for row in result["timeline"]:
        print(row)
    print("job size over time:", result["job_bytes"])
    record("soak", {"machine": machine(), **result})


if __name__ == "__main__":
    main()

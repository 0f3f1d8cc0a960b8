"""Prometheus metrics of a worker: counters as jobs start and end, the queue's state read from
the database on a scrape, served on loopback."""

from __future__ import annotations

import socket
import urllib.request
from typing import Any

import pytest

from queuer import Options

from .helpers import FAST_MASTER, QueuerFactory, eventually

parser = pytest.importorskip("prometheus_client.parser", reason="the metrics extra is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in parser.text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_worker_serves_its_counters_and_the_queues_state(make_queuer: QueuerFactory) -> None:
    q = make_queuer("measured", 2)

    def ok() -> int:
        return 1

    def bad() -> None:
        raise ValueError("no")

    q.add_task(ok)
    q.add_task(bad)
    port = _free_port()
    q.serve_metrics(port)
    q.pause_queue("emails")
    q.add_job_with_options(Options(queue="emails"), ok)  # stays queued
    q.start(FAST_MASTER)
    for rid in [q.add_job(ok).rid for _ in range(3)] + [q.add_job(bad).rid]:
        q.wait_for_job_finished(rid, 30)

    def scraped() -> Any:
        samples = _scrape(port)
        return samples if samples.get(("queuer_master_present", ())) == 1 else None

    samples = eventually(scraped, what="a scrape that sees the master")
    assert samples[("queuer_jobs_started_total", (("queue", "default"), ("task", "ok")))] == 3
    finished = (("queue", "default"), ("status", "SUCCEEDED"), ("task", "ok"))
    assert samples[("queuer_jobs_finished_total", finished)] == 3
    assert (
        samples[("queuer_jobs_finished_total", (("queue", "default"), ("status", "FAILED"), ("task", "bad")))]
        == 1
    )
    assert samples[("queuer_job_run_seconds_count", (("task", "ok"),))] == 3
    assert samples[("queuer_jobs", (("queue", "emails"), ("state", "queued")))] == 1
    assert samples[("queuer_oldest_queued_seconds", (("queue", "emails"),))] >= 0
    assert samples[("queuer_workers_alive", ())] == 1

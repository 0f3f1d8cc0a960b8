"""Issue 8: the queuer command, run for real in a subprocess against real PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

from queuer import BatchJob, JobStatus, Options, WorkerStatus

from .helpers import QueuerFactory

ROOT = Path(__file__).resolve().parent.parent


def queuer_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QUEUER_DB_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "queuer", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_init_is_idempotent_and_errors_are_one_line(database_url: str) -> None:
    missing = queuer_cli(database_url, "list", "jobs")
    assert missing.returncode == 2 and "run: queuer init" in missing.stderr
    assert "Traceback" not in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    first = as_json(queuer_cli(database_url, "init", "--json"))
    assert first["schema"] == "public" and any("created tables" in a for a in first["actions"])
    assert as_json(queuer_cli(database_url, "init", "--json"))["actions"] == []
    down = queuer_cli(database_url, "stats", "--dsn", "postgresql://postgres@127.0.0.1:1/nowhere")
    assert down.returncode == 2 and down.stderr.startswith("queuer: cannot reach the database")
    assert "Traceback" not in down.stderr


def test_list_get_cancel_readd_stop_and_stats(make_queuer: QueuerFactory, database_url: str) -> None:
    q = make_queuer("cli-target", 1)

    @q.task()
    def ping(n: int) -> int:
        return n

    @q.task()
    def other() -> None: ...

    jobs = [q.add_job(ping, i) for i in range(5)] + [q.add_job(other)]
    listed = as_json(queuer_cli(database_url, "list", "jobs", "--json"))
    assert [j["rid"] for j in listed] == [str(j.rid) for j in reversed(jobs)]
    assert {
        j["task_name"] for j in as_json(queuer_cli(database_url, "list", "jobs", "--task", "other", "--json"))
    } == {"other"}
    page1 = as_json(queuer_cli(database_url, "list", "jobs", "--limit", "2", "--json"))
    page2 = as_json(
        queuer_cli(database_url, "list", "jobs", "--limit", "2", "--last-id", str(page1[-1]["id"]), "--json")
    )
    assert [j["rid"] for j in page1 + page2] == [str(j.rid) for j in reversed(jobs)][:4]
    found = as_json(queuer_cli(database_url, "list", "jobs", "--search", str(jobs[2].rid)[-12:], "--json"))
    assert [j["rid"] for j in found] == [str(jobs[2].rid)]
    table = queuer_cli(database_url, "list", "jobs")
    assert table.returncode == 0 and table.stdout.startswith("ID") and "ping" in table.stdout

    got = as_json(queuer_cli(database_url, "get", "job", str(jobs[0].rid), "--json"))
    assert got["parameters"] == [0] and got["status"] == "QUEUED"
    cancelled = as_json(queuer_cli(database_url, "cancel", "job", str(jobs[0].rid), "--json"))
    assert cancelled["status"] == "CANCELLED"
    assert q.get_job_ended(jobs[0].rid).status is JobStatus.CANCELLED
    again = queuer_cli(database_url, "cancel", "job", str(jobs[0].rid))
    assert again.returncode == 1 and "no queued" in again.stderr
    assert as_json(queuer_cli(database_url, "list", "archive", "--status", "cancelled", "--json"))[0][
        "rid"
    ] == str(jobs[0].rid)
    readded = as_json(queuer_cli(database_url, "readd", str(jobs[0].rid), "--json"))
    assert (
        readded["rid"] != str(jobs[0].rid) and readded["parameters"] == [0] and readded["status"] == "QUEUED"
    )

    workers = as_json(queuer_cli(database_url, "list", "workers", "--json"))
    assert [w["name"] for w in workers] == ["cli-target"]
    connections = as_json(queuer_cli(database_url, "list", "connections", "--json"))
    assert connections and all(c["application_name"] == "queuer" for c in connections)
    stopped = as_json(queuer_cli(database_url, "stop", "worker", str(q.worker.rid), "--graceful", "--json"))
    assert stopped["status"] == "STOPPING"
    assert q.get_worker(q.worker.rid).status is WorkerStatus.STOPPING

    stats = as_json(queuer_cli(database_url, "stats", "--json"))
    counts = {(c["table"], c["status"], c["task"]): c["count"] for c in stats["counts"]}
    assert counts[("job", "QUEUED", "ping")] == 5 and counts[("job_archive", "CANCELLED", "ping")] == 1
    assert stats["oldest_queued_seconds"] >= 0 and stats["finished_last_minute"] == 1
    bad = queuer_cli(database_url, "get", "worker", "not-a-uuid")
    assert bad.returncode == 2 and "not a UUID" in bad.stderr


def test_worker_command_runs_jobs_and_stops_on_sigterm(
    make_queuer: QueuerFactory, database_url: str, sql: psycopg.Connection[Any]
) -> None:
    env = {**os.environ, "QUEUER_DB_URL": database_url}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "queuer",
            "worker",
            "tests.cli_app:make",
            "--concurrency",
            "3",
            "--name",
            "from-cli",
            "--queues",
            "urgent,default",
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the worker logs at INFO; wait for its start line
            if "running tasks shout" in line:
                break
        producer = make_queuer("producer", 1)
        other = producer.add_job_with_options(Options(queue="elsewhere"), "shout", "not mine")
        urgent = producer.add_job_with_options(Options(queue="urgent"), "shout", "hi")
        done = producer.wait_for_job_finished(urgent.rid, 20)
        assert producer.get_job(other.rid).status is JobStatus.QUEUED  # not one of its queues
        assert done.results == ["HI"]
        worker = sql.execute(
            "SELECT name, max_concurrency, status FROM worker WHERE rid = %s", (done.worker_rid,)
        ).fetchone()
        assert worker == ("from-cli", 3, "RUNNING")
        proc.send_signal(signal.SIGTERM)
        rest = proc.stderr.read()
        assert proc.wait(30) == 0
        assert "started (attempt 1)" in rest or "ended SUCCEEDED" in rest
        status = sql.execute("SELECT status FROM worker WHERE rid = %s", (done.worker_rid,)).fetchone()
        assert status == ("STOPPED",)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()


def test_version_global_options_confirmations_and_pipes(
    make_queuer: QueuerFactory, database_url: str
) -> None:
    version = queuer_cli(database_url, "--version")
    assert version.returncode == 0 and version.stdout.startswith("queuer ")
    q = make_queuer("cli-more", 1)

    @q.task()
    def nap(n: int) -> int:
        return n

    jobs = [q.add_job(nap, i) for i in range(3)]
    q.add_jobs([BatchJob(nap, [i]) for i in range(1500)])  # more than a pipe's buffer of output
    # --json and --dsn before the subcommand, as well as after it.
    before = as_json(
        queuer_cli(database_url, "--json", "--dsn", database_url, "list", "jobs", "--limit", "3")
    )
    after = as_json(queuer_cli(database_url, "list", "jobs", "--limit", "3", "--json"))
    assert before == after and len(before) == 3
    cancelled = queuer_cli(database_url, "cancel", "job", str(jobs[0].rid))
    assert cancelled.returncode == 0
    assert cancelled.stdout.strip() == f"cancelled job {jobs[0].rid} (nap); it is archived as CANCELLED"
    # `get job` finds an archived job too.
    assert (
        as_json(queuer_cli(database_url, "get", "job", str(jobs[0].rid), "--json"))["status"] == "CANCELLED"
    )
    stopped = queuer_cli(database_url, "stop", "worker", str(q.worker.rid))
    assert stopped.returncode == 0 and "to stop now (STOPPED)" in stopped.stdout
    assert "its row says STOPPED" in stopped.stdout
    # Output piped into a reader that leaves early: no traceback, no complaint.
    env = {**os.environ, "QUEUER_DB_URL": database_url}
    piped = subprocess.run(
        f"{sys.executable} -m queuer list jobs --limit 2000 | head -1",
        shell=True,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.stdout.startswith("ID") and piped.stderr == ""
    help_text = queuer_cli(database_url, "list", "--help").stdout
    assert help_text.count("SUCCEEDED") == 1 and help_text.count("STOPPING") == 1

"""Django's task framework on queuer: a real Django project (example/django_project) on PostgreSQL
through psycopg 3, its worker run with ``manage.py queuer_worker``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import psycopg
import pytest

from .helpers import ROOT, count

pytest.importorskip("django", reason="the django extra is not installed")
try:
    import django.tasks  # noqa: F401
except ImportError:
    pytest.importorskip("django_tasks", reason="Django < 6 needs the django-tasks backport")

PROJECT = ROOT / "example" / "django_project"


def test_django_tasks_enqueue_in_the_request_transaction_and_report_results(
    database_url: str, sql: psycopg.Connection[Any]
) -> None:
    sql.execute("CREATE TABLE orders (id serial PRIMARY KEY, note text)")
    env = {**os.environ, "QUEUER_DB_URL": database_url, "PYTHONPATH": str(PROJECT)}
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "queuer_worker", "--concurrency", "2", "--name", "django-worker"],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        line = worker.stdout.readline()
        assert "running" in line and "shop.tasks.add" in line, line or worker.stderr.read()
        result = subprocess.run(
            [sys.executable, "-c", "import shop.scenario"],
            cwd=PROJECT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        seen = json.loads(result.stdout.strip().splitlines()[-1])
        assert seen["kept"] == ["SUCCESSFUL", 5]
        assert seen["loud"] == ["SUCCESSFUL", "HI"]
        assert seen["failing"][0] == "FAILED" and "this task fails" in seen["failing"][1]
        assert seen["dropped_found"] is False  # rolled back with the order
        assert [r[0] for r in sql.execute("SELECT note FROM orders").fetchall()] == ["kept"]
        routed = sql.execute(
            "SELECT options -> 'metadata' -> 'queuer_py' FROM job_archive WHERE task_name = 'shop.tasks.shout'"
        ).fetchone()
        assert routed == ({"queue": "emails", "priority": 5},)
        assert count(sql, "SELECT count(*) FROM job_archive") == 3
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        finally:
            if worker.poll() is None:
                worker.kill()
    assert worker.returncode == 0

"""A process that ends without stop() cleans up: its worker row STOPPED, its running jobs back in
the queue; a `queuer worker` whose import fails leaves no row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import psycopg
import pytest

from .helpers import ROOT, count, run_python


# -- ending without stop() ----------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["end", "raise", "sigterm", "sigint"])
def test_a_process_that_ends_without_stop_cleans_up(
    mode: str, database_url: str, sql: psycopg.Connection[Any]
) -> None:
    env = {**os.environ, "QUEUER_DB_URL": database_url}
    script_mode = mode if mode in ("end", "raise") else "wait"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.exit_script", script_mode],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("running "), line
    worker_rid, job_rid = line.split()[1:]
    if mode == "sigterm":
        proc.send_signal(signal.SIGTERM)
    elif mode == "sigint":
        proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert "Task was destroyed" not in stderr and "Exception ignored" not in stderr, stderr
    if mode == "raise":
        assert "RuntimeError: the application failed" in stderr
    else:
        assert "Traceback" not in stderr or mode == "sigint", stderr
    assert sql.execute("SELECT status FROM worker WHERE rid = %s", (worker_rid,)).fetchone() == ("STOPPED",)
    assert sql.execute("SELECT status FROM job WHERE rid = %s", (job_rid,)).fetchone() == ("QUEUED",)


def test_a_worker_command_whose_import_fails_leaves_no_row(
    database_url: str, sql: psycopg.Connection[Any]
) -> None:
    result = run_python(database_url, "-m", "queuer", "worker", "tests.broken_app:worker")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "ImportError: a module this application needs is missing" in result.stderr.strip().splitlines()[-1]
    assert count(sql, "SELECT count(*) FROM worker") == 0

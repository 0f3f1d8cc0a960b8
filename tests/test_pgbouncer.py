"""Issue 4: everything but LISTEN works through PgBouncer in transaction mode.

Runs where a ``pgbouncer`` binary is installed (``apt-get install pgbouncer``); skipped otherwise.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from queuer import BatchJob, DatabaseConfiguration, JobStatus, OnError, Options, Schedule

from .helpers import QueuerFactory

PGBOUNCER = shutil.which("pgbouncer") or (
    "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def bouncer_url(database_url: str) -> Iterator[str]:
    if PGBOUNCER is None:
        pytest.skip("no pgbouncer binary on this machine")
    params = psycopg.conninfo.conninfo_to_dict(database_url)
    host = params.get("host") or "127.0.0.1"
    if str(host).startswith("/"):
        pytest.skip("the test server listens on a Unix socket only (embedded); pgbouncer needs TCP here")
    port = _free_port()
    workdir = Path(tempfile.mkdtemp(prefix="queuer-pgbouncer-"))
    (workdir / "users.txt").write_text('"postgres" ""\n')
    (workdir / "pgbouncer.ini").write_text(
        f"[databases]\n{params['dbname']} = host={host} port={params.get('port') or 5432} "
        f"dbname={params['dbname']} user=postgres\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nauth_type = trust\n"
        f"auth_file = {workdir}/users.txt\npool_mode = transaction\nmax_client_conn = 100\n"
        f"default_pool_size = 10\nunix_socket_dir =\nlogfile = {workdir}/pgbouncer.log\n"
        "admin_users = postgres\n"
    )
    args = [PGBOUNCER, str(workdir / "pgbouncer.ini")]
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a 'postgres' system user for pgbouncer")
        shutil.chown(workdir, user.pw_uid)
        for f in workdir.iterdir():
            shutil.chown(f, user.pw_uid)
        args = [PGBOUNCER, "-u", "postgres", str(workdir / "pgbouncer.ini")]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"postgresql://postgres@127.0.0.1:{port}/{params['dbname']}?sslmode=disable"
    deadline = time.monotonic() + 10
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            break
        except psycopg.OperationalError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.skip("pgbouncer did not start here")
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(workdir, ignore_errors=True)


def test_everything_but_listen_works_through_pgbouncer(
    make_queuer: QueuerFactory, bouncer_url: str, database_url: str
) -> None:
    config = DatabaseConfiguration.from_url(bouncer_url, behind_pooler=True, listen_dsn=database_url)
    q = make_queuer("bounced", 4, db_config=config)

    @q.task()
    async def add(a: int, b: int) -> int:
        return a + b

    @q.task()
    def flaky() -> None:
        raise ValueError("again")

    q.start(master_settings=None)
    single = [q.add_job(add, i, i) for i in range(20)]
    batch = q.add_jobs([BatchJob(add, [i, 1]) for i in range(200)])
    retried = q.add_job_with_options(Options(on_error=OnError(max_retries=1)), flaky)
    later = q.add_job_with_options(
        Options(schedule=Schedule(start=datetime.now(UTC) + timedelta(seconds=0.5))), add, 2, 2
    )
    assert [q.wait_for_job_finished(j.rid, 30).results for j in single] == [[2 * i] for i in range(20)]
    assert {q.wait_for_job_finished(r, 30).status for r in batch} == {JobStatus.SUCCEEDED}
    failed = q.wait_for_job_finished(retried.rid, 30)
    assert (failed.status, failed.attempts) == (JobStatus.FAILED, 2)
    assert q.wait_for_job_finished(later.rid, 30).results == [4]
    console = bouncer_url.rsplit("/", 1)[0] + "/pgbouncer?sslmode=disable"
    with psycopg.connect(console, autocommit=True, cursor_factory=psycopg.ClientCursor) as admin:
        clients = admin.execute("SHOW CLIENTS").fetchall()
    dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    assert sum(1 for c in clients if dbname in c) >= 1  # the pool's connections really go through PgBouncer
    q.stop()  # before the pooler goes away
    assert q.worker.status.value == "STOPPED"

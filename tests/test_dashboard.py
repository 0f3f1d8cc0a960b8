"""The dashboard over HTTP against a real database: every page, what it hides, its actions and
their effect in the tables, its guards (read-only, credentials, cross-site posts), its metrics.
The same pages in a real browser are in test_dashboard_browser.py."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from queuer import Client, DatabaseConfiguration, Options, Step, connect_with_db

from .dashboard_server import serving
from .helpers import FAST_MASTER, QueuerFactory, count, eventually, has_pgcrypto

httpx = pytest.importorskip("httpx", reason="the test extra is not installed")
pytest.importorskip("starlette", reason="the dashboard extra is not installed")
parser = pytest.importorskip("prometheus_client.parser", reason="the dashboard extra is not installed")


def _noop(x: int = 0) -> int:
    return x


@pytest.fixture
def dashboard(client: Client) -> Iterator[str]:
    with serving(client) as url:
        yield url


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "the page has no action form"
    return found.group(1)


def _post(url: str, data: dict[str, str], **headers: str) -> httpx.Response:
    return httpx.post(url, data=data, headers=headers, follow_redirects=False, timeout=30)


def test_every_page_answers_and_shows_the_jobs(
    make_queuer: QueuerFactory, client: Client, dashboard: str, sql: psycopg.Connection[Any]
) -> None:
    q = make_queuer("shown", 2)

    def fails() -> None:
        raise ValueError("it broke on purpose")

    q.add_task(_noop)
    q.add_task(fails)
    q.periodic("*/5 * * * *", name="every-five")(_noop)
    q.start(FAST_MASTER)
    done = q.add_job(_noop, 41)
    broken = q.add_job(fails)
    q.wait_for_job_finished(done.rid, 30)
    q.wait_for_job_finished(broken.rid, 30)
    chain = q.add_chain([Step(_noop, 1), Step(_noop)])
    q.wait_for_workflow(chain.rid, 30)
    q.pause_queue("mail")
    waiting = client.add_job_with_options(Options(queue="mail", priority=7), "noop", 3)

    pages = {
        "/": ["Overview", "succeeded", "Last hour", "mail"],
        "/jobs": [str(waiting.rid)[:13], "mail"],
        "/jobs?queue=mail&status=QUEUED": [str(waiting.rid)[:13]],
        "/archive": [str(done.rid)[:13], "it broke on purpose"],
        "/archive?status=FAILED": [str(broken.rid)[:13]],
        f"/archive?q={broken.rid}": [str(broken.rid)[:13]],
        "/archive?q=broke": [str(broken.rid)[:13]],
        "/scheduled": ["every-five", "*/5 * * * *"],
        "/workers": ["shown", "master"],
        f"/workers/{q.worker.rid}": ["Running jobs"],
        "/queues": ["mail", "paused"],
        f"/jobs/{done.rid}": ["_noop", "SUCCEEDED", "Show parameters and results"],
        f"/jobs/{chain.members[1].rid}": ["Chain", str(chain.members[0].rid)],
    }
    for path, expected in pages.items():
        answer = httpx.get(dashboard + path, timeout=30)
        assert answer.status_code == 200, (path, answer.text[:500])
        for text in expected:
            assert text in answer.text, (path, text)
        assert answer.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    # A filter that matches nothing, and the archive's failed filter without the succeeded one.
    assert str(done.rid)[:13] not in httpx.get(dashboard + "/archive?status=FAILED", timeout=30).text
    assert "no jobs" in httpx.get(dashboard + "/jobs?task=nothing-like-this", timeout=30).text


def test_parameters_and_results_stay_hidden_until_asked_for(client: Client, dashboard: str) -> None:
    job = client.add_job("noop", 987654321)
    page = httpx.get(f"{dashboard}/jobs/{job.rid}", timeout=30).text
    assert "987654321" not in page
    shown = httpx.get(f"{dashboard}/jobs/{job.rid}?reveal=1", timeout=30).text
    assert "987654321" in shown


def test_encrypted_values_are_never_decrypted_without_the_key(
    db_config: DatabaseConfiguration, client: Client, sql: psycopg.Connection[Any]
) -> None:
    if not has_pgcrypto(sql):
        pytest.skip("this server has no pgcrypto (embedded PostgreSQL): encryption cannot be set up")
    secret_client = connect_with_db(db_config, "a-secret-key", encrypt_parameters=True)
    try:
        job = secret_client.add_job("noop", "launch-code-4242")
        plain = connect_with_db(db_config)
        try:
            with serving(plain) as url:
                page = httpx.get(f"{url}/jobs/{job.rid}?reveal=1", timeout=30).text
            assert "launch-code-4242" not in page
            assert "encrypted" in page and "no key" in page
        finally:
            plain.close()
        with serving(secret_client, encryption_key="a-secret-key") as url:
            assert "launch-code-4242" not in httpx.get(f"{url}/jobs/{job.rid}", timeout=30).text
            assert "launch-code-4242" in httpx.get(f"{url}/jobs/{job.rid}?reveal=1", timeout=30).text
    finally:
        secret_client.close()


def test_actions_change_the_tables(
    make_queuer: QueuerFactory, client: Client, dashboard: str, sql: psycopg.Connection[Any]
) -> None:
    token = _csrf(httpx.get(dashboard + "/jobs", timeout=30).text)
    job = client.add_job("noop", 1)

    answer = _post(f"{dashboard}/jobs/{job.rid}/cancel", {"csrf": token, "next": "/jobs"})
    assert answer.status_code == 303 and "cancelled" in answer.headers["location"]
    assert sql.execute("SELECT status FROM job_archive WHERE rid = %s", (job.rid,)).fetchone() == (
        "CANCELLED",
    )

    answer = _post(f"{dashboard}/jobs/{job.rid}/readd", {"csrf": token, "next": "/archive"})
    assert answer.status_code == 303
    assert count(sql, "SELECT count(*) FROM job WHERE task_name = 'noop' AND status = 'QUEUED'") == 1

    _post(f"{dashboard}/queues/mail/pause", {"csrf": token})
    assert sql.execute("SELECT paused FROM queuer_py_queue WHERE name = 'mail'").fetchone() == (True,)
    _post(f"{dashboard}/queues/mail/resume", {"csrf": token})
    assert sql.execute("SELECT paused FROM queuer_py_queue WHERE name = 'mail'").fetchone() == (False,)
    _post(
        f"{dashboard}/queues/limits",
        {"csrf": token, "queue": "mail", "concurrency": "3", "rate": "", "per": "1"},
    )
    assert sql.execute("SELECT concurrency, rate FROM queuer_py_queue WHERE name = 'mail'").fetchone() == (
        3,
        None,
    )
    answer = _post(f"{dashboard}/queues/limits", {"csrf": token, "queue": "mail", "concurrency": "-1"})
    assert "problem=" in answer.headers["location"]
    assert sql.execute("SELECT concurrency FROM queuer_py_queue WHERE name = 'mail'").fetchone() == (3,)

    q = make_queuer("to-stop", 1)
    q.add_task(_noop)
    q.start(FAST_MASTER)
    _post(f"{dashboard}/workers/{q.worker.rid}/stop", {"csrf": token, "mode": "graceful"})
    eventually(lambda: q.wait_until_stopped(0.1), 30, "the worker stopping after a graceful stop")
    assert sql.execute("SELECT status FROM worker WHERE rid = %s", (q.worker.rid,)).fetchone() == ("STOPPED",)


def test_bulk_actions_follow_the_filter(client: Client, dashboard: str, sql: psycopg.Connection[Any]) -> None:
    token = _csrf(httpx.get(dashboard + "/jobs", timeout=30).text)
    # More jobs than a batch of the bulk action.
    client.add_jobs([queuer_batch("mail") for _ in range(2500)])
    client.add_jobs([queuer_batch("default") for _ in range(7)])
    answer = _post(
        f"{dashboard}/bulk/cancel", {"csrf": token, "queue": "mail", "status": "QUEUED", "next": "/jobs"}
    )
    assert "2%2C500+jobs+cancelled" in answer.headers["location"]
    assert count(sql, "SELECT count(*) FROM job") == 7
    assert count(sql, "SELECT count(*) FROM job_archive WHERE status = 'CANCELLED'") == 2500

    answer = _post(
        f"{dashboard}/bulk/readd", {"csrf": token, "status": "CANCELLED", "q": "noop", "next": "/archive"}
    )
    assert "2%2C500+jobs+added+again" in answer.headers["location"]
    assert count(sql, "SELECT count(*) FROM job") == 2507


def queuer_batch(queue: str) -> Any:
    from queuer import BatchJob

    return BatchJob("noop", [1], options=Options(queue=queue))


def test_actions_are_refused_without_the_pages_token_from_other_sites_and_when_read_only(
    client: Client, db_config: DatabaseConfiguration, sql: psycopg.Connection[Any]
) -> None:
    job = client.add_job("noop", 1)
    with serving(client) as url:
        token = _csrf(httpx.get(url + "/jobs", timeout=30).text)
        cancel = f"{url}/jobs/{job.rid}/cancel"
        assert _post(cancel, {}).status_code == 403
        assert _post(cancel, {"csrf": "guessed"}).status_code == 403
        assert _post(cancel, {"csrf": token}, origin="https://evil.example").status_code == 403
        assert _post(cancel, {"csrf": token}, **{"sec-fetch-site": "cross-site"}).status_code == 403
        assert httpx.get(cancel, timeout=30).status_code == 405
        assert count(sql, "SELECT count(*) FROM job WHERE rid = %s", job.rid) == 1
    with serving(client, read_only=True) as url:
        page = httpx.get(url + "/jobs", timeout=30).text
        assert "read-only" in page and 'name="csrf"' not in page
        assert "Cancel" not in httpx.get(f"{url}/jobs/{job.rid}", timeout=30).text
        assert _post(f"{url}/jobs/{job.rid}/cancel", {"csrf": "x"}).status_code == 403
        assert count(sql, "SELECT count(*) FROM job WHERE rid = %s", job.rid) == 1


def test_credentials_are_asked_for_when_set(client: Client) -> None:
    with serving(client, basic_auth=("admin", "s3cret-pass"), token="t" * 32) as url:
        assert httpx.get(url + "/", timeout=30).status_code == 401
        assert httpx.get(url + "/metrics", timeout=30).status_code == 401
        assert httpx.get(url + "/", auth=("admin", "wrong"), timeout=30).status_code == 401
        assert httpx.get(url + "/", auth=("admin", "s3cret-pass"), timeout=30).status_code == 200
        bearer = {"authorization": "Bearer " + "t" * 32}
        assert httpx.get(url + "/metrics", headers=bearer, timeout=30).status_code == 200
        assert httpx.get(url + "/static/dashboard.js", timeout=30).status_code == 401


def test_bad_input_is_refused_with_a_message(dashboard: str) -> None:
    for path, message in {
        "/jobs?status=FINISHED": "status must be one of",
        "/archive?status=QUEUED": "status must be one of",
        "/jobs?older=abc": "older must be a job id",
        "/jobs?size=7": "size must be one of",
        "/jobs/not-a-uuid": "not a rid",
        "/jobs?queue=" + "x" * 101: "queue",
    }.items():
        answer = httpx.get(dashboard + path, timeout=30)
        assert answer.status_code == 400, path
        assert message in answer.text, (path, answer.text[:300])
    assert httpx.get(f"{dashboard}/jobs/{uuid.uuid4()}", timeout=30).status_code == 200  # "not found" page


def test_pages_walk_a_long_list_by_cursor(client: Client, dashboard: str) -> None:
    from queuer import BatchJob

    client.add_jobs([BatchJob("noop", [i]) for i in range(60)])
    first = httpx.get(dashboard + "/jobs?size=25", timeout=30).text
    older = re.search(r'href="/jobs\?([^"]*older=\d+[^"]*)"', first)
    assert older, "no link to older jobs"
    second = httpx.get(dashboard + "/jobs?" + older.group(1).replace("&amp;", "&"), timeout=30).text
    ids = lambda page: re.findall(r'<td class="num">(\d+)</td>\s*<td><a href="/jobs/', page)  # noqa: E731
    assert len(ids(first)) == 25 and len(ids(second)) == 25
    assert min(map(int, ids(first))) > max(map(int, ids(second)))
    assert "newer" in second


def test_metrics_count_what_happened_between_scrapes(
    make_queuer: QueuerFactory, client: Client, dashboard: str
) -> None:
    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(dashboard + "/metrics", timeout=30).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in parser.text_string_to_metric_families(text)
            for s in family.samples
        }

    scrape()  # the counters start here
    q = make_queuer("counted", 2)
    q.add_task(_noop)
    q.start(FAST_MASTER)
    for rid in [q.add_job(_noop).rid for _ in range(3)]:
        q.wait_for_job_finished(rid, 30)
    q.pause_queue("mail")
    finished = (
        "queuer_jobs_finished_total",
        (("queue", "default"), ("status", "SUCCEEDED"), ("task", "_noop")),
    )

    def counted() -> Any:  # the counters read the tables with a lag of a few seconds
        samples = scrape()
        return (
            samples
            if samples.get(finished) == 3 and samples.get(("queuer_master_present", ())) == 1
            else None
        )

    samples = eventually(counted, 30, "three finished jobs in the metrics")
    assert samples[("queuer_jobs_enqueued_total", (("queue", "default"), ("task", "_noop")))] == 3
    assert samples[("queuer_jobs_started_total", (("queue", "default"), ("task", "_noop")))] == 3
    assert samples[("queuer_job_run_seconds_count", (("task", "_noop"),))] == 3
    assert samples[("queuer_jobs_archived", (("status", "SUCCEEDED"),))] == 3
    assert samples[("queuer_queue_paused", (("queue", "mail"),))] == 1
    assert samples[("queuer_workers_alive", ())] == 1
    assert counted()[finished] == 3  # a later scrape does not count them again


def test_the_dashboard_never_writes_a_worker_row_and_listens_only_while_watched(
    client: Client, dashboard: str, sql: psycopg.Connection[Any]
) -> None:
    workers = sql.execute("SELECT * FROM worker ORDER BY id").fetchall()
    for path in ("/", "/jobs", "/archive", "/scheduled", "/workers", "/queues", "/metrics"):
        httpx.get(dashboard + path, timeout=30)
    assert sql.execute("SELECT * FROM worker ORDER BY id").fetchall() == workers
    listening = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%%'"
    )
    assert count(sql, listening) == 0
    with httpx.stream("GET", dashboard + "/events?topics=job", timeout=30) as events:
        lines = events.iter_lines()
        assert next(line for line in lines if line.startswith("data:")) == "data: live"
        eventually(lambda: count(sql, listening) == 1, 20, "the live feed's LISTEN connection")
        client.add_job("noop", 5)
        assert next(line for line in lines if line.startswith("event:")) == "event: change"
    eventually(lambda: count(sql, listening) == 0, 20, "the live feed stopping with its last viewer")

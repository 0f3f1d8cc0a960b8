"""The dashboard in a real browser (headless Chromium driven by Playwright) against a real
database: every page at a desktop and a phone width (screenshots kept), each action clicked and
checked in the tables, and a job enqueued by another process appearing without a reload."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from queuer import Client, Options

from .dashboard_server import serving
from .helpers import FAST_MASTER, QueuerFactory, count, eventually, run_python

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (test extra)")
pytest.importorskip("starlette", reason="the dashboard extra is not installed")

CHROMIUM = os.environ.get("QUEUER_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WIDTHS = (1280, 390)
pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None,
    reason=f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; or set QUEUER_CHROMIUM)",
)


def _noop(x: int = 0) -> int:
    return x


def _fails() -> None:
    raise ValueError("failed on purpose")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where the pages' pictures go: QUEUER_SCREENSHOTS (kept after the run) or a temporary folder."""
    folder = Path(os.environ.get("QUEUER_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def _page(browser: Any, width: int) -> Iterator[tuple[Any, list[str]]]:
    """A new page of ``width`` pixels, closed at the end of the block (so its live feed ends
    before the server does); the browser's console errors (CSP violations among them) are
    collected in the list, and every confirmation dialog is accepted."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("dialog", lambda dialog: dialog.accept())
    try:
        yield page, errors
    finally:
        context.close()


def test_every_page_renders_at_desktop_and_phone_widths(
    browser: Any, make_queuer: QueuerFactory, client: Client, screenshots: Path
) -> None:
    q = make_queuer("pictured", 2)
    q.add_task(_noop)
    q.add_task(_fails)
    q.periodic("0 * * * *", name="hourly")(_noop)
    q.start(FAST_MASTER)
    for rid in [q.add_job(_noop, i).rid for i in range(5)] + [q.add_job(_fails).rid]:
        q.wait_for_job_finished(rid, 30)
    q.pause_queue("reports")
    waiting = client.add_job_with_options(Options(queue="reports", priority=3), "noop", 1)
    eventually(
        lambda: client.get_master().worker_rid == q.worker.rid, 30, "the worker holding the master role"
    )
    paths = {
        "overview": "/",
        "jobs": "/jobs",
        "archive": "/archive",
        "scheduled": "/scheduled",
        "workers": "/workers",
        "worker": f"/workers/{q.worker.rid}",
        "queues": "/queues",
        "job": f"/jobs/{waiting.rid}",
    }
    with serving(client) as url:
        for width in WIDTHS:
            with _page(browser, width) as (page, errors):
                _picture_every_page(page, errors, url, paths, width, screenshots)


def _picture_every_page(
    page: Any, errors: list[str], url: str, paths: dict[str, str], width: int, screenshots: Path
) -> None:
    for name, path in paths.items():
        answer = page.goto(url + path)
        assert answer is not None and answer.status == 200, (name, width)
        page.wait_for_selector("main h1")
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= width, f"{name} is {overflow} px wide at {width} px"
        shot = screenshots / f"{name}-{width}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 5_000
    assert page.goto(url + "/workers") is not None
    assert page.locator("text=pictured").first.is_visible()
    assert page.locator(".badge", has_text="master").first.is_visible()
    assert errors == [], errors


def test_each_action_clicked_changes_the_tables(
    browser: Any, make_queuer: QueuerFactory, client: Client, sql: psycopg.Connection[Any]
) -> None:
    cancelled = client.add_job("noop", 1001)
    mail = [client.add_job_with_options(Options(queue="mail"), "noop", i) for i in range(3)]
    other = client.add_job_with_options(Options(queue="other"), "noop", 9)
    worker = make_queuer("stoppable", 1)
    worker.add_task(_noop)
    worker.start(FAST_MASTER)
    with serving(client) as url, _page(browser, 1280) as (page, errors):
        page.goto(f"{url}/jobs/{cancelled.rid}")
        page.click("button:has-text('Cancel')")
        page.wait_for_selector(".notice")
        assert sql.execute("SELECT status FROM job_archive WHERE rid = %s", (cancelled.rid,)).fetchone() == (
            "CANCELLED",
        )

        page.goto(f"{url}/jobs/{cancelled.rid}")
        page.click("button:has-text('Add again')")
        page.wait_for_selector(".notice")
        assert (
            count(
                sql,
                "SELECT count(*) FROM job WHERE task_name = 'noop' AND options IS NOT NULL "
                "AND parameters = '[1001]'::jsonb",
            )
            == 1
        )

        page.goto(f"{url}/queues")
        page.locator("tr[data-queue='mail'] button:has-text('Pause')").click()
        page.wait_for_selector(".notice")
        assert sql.execute("SELECT paused FROM queuer_py_queue WHERE name = 'mail'").fetchone() == (True,)
        page.locator("tr[data-queue='mail'] button:has-text('Resume')").click()
        page.wait_for_selector(".notice")
        assert sql.execute("SELECT paused FROM queuer_py_queue WHERE name = 'mail'").fetchone() == (False,)
        page.select_option("#limits-form select[name=queue]", "mail")
        page.fill("#limits-form input[name=concurrency]", "2")
        page.click("#limits-form button")
        page.wait_for_selector(".notice")
        assert sql.execute("SELECT concurrency FROM queuer_py_queue WHERE name = 'mail'").fetchone() == (2,)

        page.goto(f"{url}/jobs")
        page.fill("form.filters input[name=queue]", "mail")
        page.click("form.filters button:has-text('Filter')")
        page.wait_for_url("**/jobs?*queue=mail*")
        page.click("button:has-text('Cancel every matching job')")
        page.wait_for_selector(".notice")
        assert "3 jobs cancelled" in page.inner_text(".notice")
        rids = [j.rid for j in mail]
        assert (
            count(sql, "SELECT count(*) FROM job_archive WHERE rid = ANY(%s) AND status = 'CANCELLED'", rids)
            == 3
        )
        assert count(sql, "SELECT count(*) FROM job WHERE rid = %s", other.rid) == 1

        page.goto(f"{url}/archive")
        page.fill("form.filters input[name=queue]", "mail")
        page.select_option("form.filters select[name=status]", "CANCELLED")
        page.click("form.filters button:has-text('Filter')")
        page.wait_for_url("**/archive?*queue=mail*")
        page.click("button:has-text('Add again every matching job')")
        page.wait_for_selector(".notice")
        assert "3 jobs added again" in page.inner_text(".notice")
        assert (
            count(
                sql,
                "SELECT count(*) FROM job WHERE options -> 'metadata' -> 'queuer_py' ->> 'queue' = 'mail'",
            )
            == 3
        )

        hasty = make_queuer("stopped-now", 1)
        hasty.add_task(_noop)
        hasty.start(FAST_MASTER)
        page.goto(f"{url}/workers")
        page.locator(f"tr[data-worker='{hasty.worker.rid}'] button:has-text('Stop now')").click()
        page.wait_for_selector(".notice")
        assert hasty.wait_until_stopped(30)
        assert sql.execute("SELECT status FROM worker WHERE rid = %s", (hasty.worker.rid,)).fetchone() == (
            "STOPPED",
        )

        page.goto(f"{url}/workers")
        page.locator(f"tr[data-worker='{worker.worker.rid}'] button:has-text('Stop gracefully')").click()
        page.wait_for_selector(".notice")
        assert worker.wait_until_stopped(30)
        assert sql.execute("SELECT status FROM worker WHERE rid = %s", (worker.worker.rid,)).fetchone() == (
            "STOPPED",
        )
        assert errors == [], errors


def test_a_job_enqueued_by_another_process_appears_without_a_reload(
    browser: Any, client: Client, database_url: str
) -> None:
    with serving(client) as url, _page(browser, 1280) as (page, errors):
        page.goto(f"{url}/jobs")
        page.wait_for_selector("body[data-live-state='on']", timeout=30_000)
        page.evaluate("window.__notReloaded = true")
        enqueued = run_python(
            database_url,
            "-c",
            "import queuer; c = queuer.connect(); print(c.add_job('noop', 7).rid); c.close()",
        )
        assert enqueued.returncode == 0, enqueued.stderr
        rid = enqueued.stdout.strip()
        page.wait_for_selector(f"text={rid[:13]}", timeout=30_000)
        assert page.evaluate("window.__notReloaded") is True

        page.goto(f"{url}/")  # the overview's counts follow too
        page.wait_for_selector("body[data-live-state='on']", timeout=30_000)
        before = page.inner_text("[data-count='QUEUED']")
        client.add_job("noop", 8)
        page.wait_for_function(
            "previous => document.querySelector(\"[data-count='QUEUED']\").textContent.trim() !== previous",
            arg=before.strip(),
            timeout=30_000,
        )
        assert errors == [], errors

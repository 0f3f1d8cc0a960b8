"""Periodic tasks declared in code: one run per tick across the fleet, catch-up after an outage,
time zones across daylight-saving changes, declarations that change and disappear."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from queuer import ValidationError
from queuer.model.periodic import ticks

from .helpers import QueuerFactory, count, eventually, run_python

TICKS = "SELECT options -> 'metadata' ->> 'tick' FROM job_archive ORDER BY 1"


def beat() -> None:
    """The periodic task of these tests."""


def test_each_tick_runs_once_across_three_workers(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    workers = [make_queuer(f"beat-{i}", 2) for i in range(3)]
    for w in workers:
        w.periodic(every=timedelta(milliseconds=300))(beat)
        w.start(master=False)
    eventually(lambda: count(sql, "SELECT count(*) FROM job_archive") >= 8, what="eight ticks")
    for w in workers:
        w.stop()
    ticks_seen = [datetime.fromisoformat(r[0]) for r in sql.execute(TICKS).fetchall()]
    assert len(ticks_seen) == len(set(ticks_seen))  # no tick twice
    gaps = {round((b - a).total_seconds(), 3) for a, b in itertools.pairwise(ticks_seen)}
    assert gaps == {0.3}  # and none skipped
    assert count(sql, "SELECT count(DISTINCT worker_id) FROM job_archive") >= 1


def test_a_cron_with_seconds_runs_on_its_ticks(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    q = make_queuer("cron", 2)
    q.periodic(cron="* * * * * *", args=(), name="every-second")(beat)  # croniter: seconds last
    q.start(master=False)
    eventually(lambda: count(sql, "SELECT count(*) FROM job_archive") >= 2, what="two ticks")
    first, second = [datetime.fromisoformat(r[0]) for r in sql.execute(TICKS).fetchall()[:2]]
    assert first.microsecond == 0 and second - first == timedelta(seconds=1)


@pytest.mark.parametrize(("catch_up", "expected"), [("latest", 1), ("all", 5)])
def test_missed_ticks_run_once_or_each_after_an_outage(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any], catch_up: str, expected: int
) -> None:
    first = make_queuer("before", 1)
    first.periodic(every=timedelta(hours=1), catch_up=catch_up)(beat)
    first.start(master=False)
    first.stop()
    # Every worker was down for five hours and a bit.
    sql.execute("UPDATE queuer_py_periodic SET last_tick = last_tick - interval '5 hours 30 minutes'")
    again = make_queuer("after", 1)
    again.periodic(every=timedelta(hours=1), catch_up=catch_up)(beat)
    again.start(master=False)
    eventually(lambda: count(sql, "SELECT count(*) FROM job_archive") == expected, what="the catch-up")
    again.stop()
    assert count(sql, "SELECT count(*) FROM job_archive") == expected
    assert count(sql, "SELECT count(*) FROM job") == 0


@pytest.mark.parametrize(("start", "clocks"), [((2026, 3, 27), "forward"), ((2026, 10, 23), "back")])
def test_daylight_saving_changes_skip_and_double_no_tick(start: tuple[int, int, int], clocks: str) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    after = datetime(*start, tzinfo=UTC)
    daily = [
        t.astimezone(berlin)
        for t in ticks("30 2 * * *", None, "Europe/Berlin", after, after + timedelta(days=4))
    ]
    assert [t.day for t in daily] == [start[2] + i for i in range(4)]  # one run on each day
    changed = daily[2]  # the day of the change
    assert (changed.hour, changed.minute) == ((3, 30) if clocks == "forward" else (2, 30))
    hourly = list(ticks("0 * * * *", None, "Europe/Berlin", after, after + timedelta(days=4)))
    walls = [t.astimezone(berlin).replace(tzinfo=None) for t in hourly]
    assert len(walls) == len(set(walls))  # no wall-clock hour twice


def test_declarations_change_on_the_next_start_and_removed_ones_show(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any], database_url: str
) -> None:
    old = make_queuer("v1", 1)
    old.periodic(cron="0 3 * * *", timezone="Europe/Berlin", name="nightly")(beat)
    old.periodic(every=timedelta(minutes=5), name="gone-soon")(beat)
    old.start(master=False)
    old.stop()
    new = make_queuer("v2", 1)
    new.periodic(cron="0 4 * * *", timezone="Europe/Berlin", name="nightly", kwargs={})(beat)
    new.start(master=False)
    assert sql.execute("SELECT cron FROM queuer_py_periodic WHERE name = 'nightly'").fetchone() == (
        "0 4 * * *",
    )
    sql.execute(
        "UPDATE queuer_py_periodic SET declared_at = declared_at - interval '11 minutes' WHERE name = 'gone-soon'"
    )
    listed = run_python(database_url, "-m", "queuer", "periodic", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["nightly"]["active"] and not rows["gone-soon"]["active"]
    nxt = datetime.fromisoformat(rows["nightly"]["next_run"]).astimezone(ZoneInfo("Europe/Berlin"))
    assert (nxt.hour, nxt.minute) == (4, 0)


def test_bad_declarations_are_refused_and_nothing_is_written(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    q = make_queuer("refuses", 1)
    for bad in (
        lambda: q.periodic(cron="61 * * * *")(beat),
        lambda: q.periodic(cron="0 3 * * *", timezone="Mars/Olympus")(beat),
        lambda: q.periodic(every=timedelta(0))(beat),
        lambda: q.periodic(every=timedelta(seconds=-1))(beat),
        lambda: q.periodic()(beat),
        lambda: q.periodic(cron="0 3 * * *", every=timedelta(hours=1))(beat),
        lambda: q.periodic(every=timedelta(hours=1), catch_up="some")(beat),
    ):
        with pytest.raises(ValidationError):
            bad()
    q.periodic(every=timedelta(hours=1), name="twice")(beat)
    with pytest.raises(ValidationError, match="declared already"):
        q.periodic(every=timedelta(hours=2), name="twice")(beat)
    assert list(q.periodics) == ["twice"]
    assert count(sql, "SELECT count(*) FROM queuer_py_periodic") == 0  # written at start only

"""Issues 2 and 7: the schema, payloads and row shapes the Go library depends on (POLYGLOT.md)."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import psycopg
import pytest

from queuer import DatabaseConfiguration, JobStatus, OnError, Options, RetryBackoff, Schedule
from queuer.database import install_schema

from .helpers import QueuerFactory

GO_FUNCTION_NAMES = {
    "init_job",
    "insert_job",
    "update_job_initial",
    "update_job_final",
    "update_job_final_encrypted",
    "update_stale_jobs",
    "select_job",
    "select_all_jobs",
    "select_all_jobs_by_worker_rid",
    "select_all_jobs_by_search",
    "add_retention_archive",
    "remove_retention_archive",
    "delete_job",
    "select_job_from_archive",
    "select_all_jobs_from_archive",
    "select_all_jobs_from_archive_by_search",
    "init_worker",
    "insert_worker",
    "update_worker",
    "delete_worker",
    "delete_stale_workers",
    "select_worker",
    "select_all_workers",
    "select_all_workers_by_search",
    "select_all_connections",
    "update_stale_workers",
    "init_master",
    "update_master",
    "select_master",
}

JOB_COLUMNS = [
    ("id", "bigint", None),
    ("rid", "uuid", "gen_random_uuid()"),
    ("worker_id", "bigint", "0"),
    ("worker_rid", "uuid", None),
    ("options", "jsonb", "'{}'::jsonb"),
    ("task_name", "character varying(100)", "''::character varying"),
    ("parameters", "jsonb", "'[]'::jsonb"),
    ("parameters_encrypted", "bytea", "'\\x'::bytea"),
    ("parameters_keyed", "jsonb", "'{}'::jsonb"),
    ("parameters_keyed_encrypted", "bytea", "'\\x'::bytea"),
    ("status", "character varying(50)", "'QUEUED'::character varying"),
    ("scheduled_at", "timestamp without time zone", None),
    ("started_at", "timestamp without time zone", None),
    ("schedule_count", "integer", "0"),
    ("attempts", "integer", "0"),
    ("results", "jsonb", "'[]'::jsonb"),
    ("results_encrypted", "bytea", "'\\x'::bytea"),
    ("error", "text", "''::text"),
    ("created_at", "timestamp without time zone", "CURRENT_TIMESTAMP"),
    ("updated_at", "timestamp without time zone", "CURRENT_TIMESTAMP"),
]


def columns(sql: psycopg.Connection[Any], table: str) -> list[tuple[str, str, str | None]]:
    return [
        (r[0], r[1], r[2])
        for r in sql.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), pg_get_expr(d.adbin, d.adrelid) "
            "FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (f"public.{table}",),
        ).fetchall()
    ]


def catalog(sql: psycopg.Connection[Any]) -> dict[str, Any]:
    """Tables, columns, indexes, triggers and functions of the database (for before/after checks)."""
    return {
        "columns": {t: columns(sql, t) for t in ("job", "job_archive", "worker", "master")},
        "indexes": sorted(
            sql.execute(
                "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
            ).fetchall()
        ),
        "triggers": sorted(
            sql.execute(
                "SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger "
                "WHERE NOT tgisinternal"
            ).fetchall()
        ),
        "functions": sorted(
            r[0]
            for r in sql.execute(
                "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')"
            ).fetchall()
        ),
    }


def test_catalog_matches_the_contract(make_queuer: QueuerFactory, sql: psycopg.Connection[Any]) -> None:
    make_queuer()
    assert columns(sql, "job") == JOB_COLUMNS
    archive = columns(sql, "job_archive")
    assert [c[0] for c in archive] == [c[0] for c in JOB_COLUMNS]
    assert archive[0] == ("id", "bigint", None) and archive[1] == ("rid", "uuid", "gen_random_uuid()")
    assert archive[2:] == JOB_COLUMNS[2:]
    identity = sql.execute(
        "SELECT attrelid::regclass::text, attidentity FROM pg_attribute WHERE attname = 'id' "
        "AND attrelid IN ('public.job'::regclass, 'public.job_archive'::regclass, 'public.worker'::regclass)"
    ).fetchall()
    assert sorted(identity) == [("job", "a"), ("job_archive", ""), ("worker", "a")]
    assert [c[:2] for c in columns(sql, "worker")] == [
        ("id", "bigint"),
        ("rid", "uuid"),
        ("name", "character varying(100)"),
        ("options", "jsonb"),
        ("available_tasks", "character varying[]"),
        ("available_next_interval", "character varying[]"),
        ("current_concurrency", "integer"),
        ("max_concurrency", "integer"),
        ("status", "character varying(50)"),
        ("created_at", "timestamp without time zone"),
        ("updated_at", "timestamp without time zone"),
    ]
    assert [c[:2] for c in columns(sql, "master")] == [
        ("id", "integer"),
        ("worker_id", "bigint"),
        ("worker_rid", "uuid"),
        ("settings", "jsonb"),
        ("created_at", "timestamp without time zone"),
        ("updated_at", "timestamp without time zone"),
    ]
    cat = catalog(sql)
    names = {(t, i) for t, i, _ in cat["indexes"]}
    required = {
        ("job", "job_pkey"),
        ("job", "job_rid_key"),
        ("job", "idx_next_interval"),
        ("job", "idx_job_parent_rid"),
        ("job", "idx_job_worker_id"),
        ("job", "idx_job_worker_rid"),
        ("job", "idx_job_status"),
        ("job", "idx_job_created_at"),
        ("job", "idx_job_updated_at"),
        ("job_archive", "job_archive_pkey"),
        ("worker", "worker_pkey"),
        ("worker", "worker_rid_key"),
        ("worker", "idx_worker_rid"),
        ("worker", "idx_worker_name"),
        ("worker", "idx_worker_status"),
        ("master", "master_pkey"),
        ("master", "idx_master_worker_id"),
        ("master", "idx_master_worker_rid"),
    }
    ours = {
        ("job", "queuer_py_job_ready_any"),
        ("job", "queuer_py_job_ready_queue"),
        ("job", "queuer_py_job_due"),
        ("job", "queuer_py_job_unique"),
        ("job", "queuer_py_job_expires"),
        ("job_archive", "queuer_py_job_archive_rid"),
        ("job_archive", "queuer_py_job_archive_updated_at"),
        ("job_archive", "queuer_py_job_archive_parent"),
        ("job_archive", "queuer_py_job_archive_unsucceeded"),
        ("queuer_py_worker", "queuer_py_worker_pkey"),
        ("queuer_py_queue", "queuer_py_queue_pkey"),
        ("queuer_py_queue_start", "queuer_py_queue_start_pkey"),
        ("queuer_py_workflow", "queuer_py_workflow_pkey"),
        ("queuer_py_member", "queuer_py_member_pkey"),
        ("queuer_py_member", "queuer_py_member_job"),
        ("queuer_py_wait", "queuer_py_wait_pkey"),
        ("queuer_py_dependency", "queuer_py_dependency_pkey"),
        ("queuer_py_dependency", "queuer_py_dependency_on"),
        ("queuer_py_progress", "queuer_py_progress_pkey"),
        ("queuer_py_periodic", "queuer_py_periodic_pkey"),
    }
    assert names == required | ours
    defs = {i: d for _, i, d in cat["indexes"]}
    assert (
        "USING hash ((((options -> 'schedule'::text) ->> 'next_interval'::text)))"
        in defs["idx_next_interval"]
    )
    assert "(id, updated_at)" in defs["job_archive_pkey"]
    assert [(t, n) for t, n, _ in cat["triggers"]] == [
        ("job", "job_notify_event"),
        ("job_archive", "job_archive_notify_event"),
    ]
    assert "BEFORE INSERT OR UPDATE ON public.job FOR EACH ROW" in cat["triggers"][0][2]
    assert "BEFORE INSERT ON public.job_archive FOR EACH ROW" in cat["triggers"][1][2]
    assert "notify_event" in cat["functions"]
    assert not GO_FUNCTION_NAMES & set(cat["functions"])
    assert sql.execute("SELECT id, worker_id, worker_rid, settings FROM master").fetchall() == [
        (1, 0, None, {})
    ]


def test_install_is_idempotent_and_safe_in_parallel(
    db_config: DatabaseConfiguration, sql: psycopg.Connection[Any]
) -> None:
    errors: list[BaseException] = []

    def install() -> None:
        try:
            asyncio.run(install_schema(db_config))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=install) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    before = catalog(sql)
    assert asyncio.run(install_schema(db_config)) == []
    assert catalog(sql) == before


def test_installer_adopts_an_existing_notify_event(
    db_config: DatabaseConfiguration, sql: psycopg.Connection[Any]
) -> None:
    """A notify_event created by someone else (e.g. Go) is kept, never replaced."""
    sql.execute(
        "CREATE FUNCTION notify_event() RETURNS trigger AS $$ BEGIN "
        "PERFORM pg_notify('job', json_build_object('id', NEW.id)::text); RETURN NEW; END; $$ LANGUAGE plpgsql"
    )
    body = sql.execute("SELECT prosrc FROM pg_proc WHERE proname = 'notify_event'").fetchone()
    actions = asyncio.run(install_schema(db_config))
    assert "created function notify_event()" not in actions
    assert sql.execute("SELECT prosrc FROM pg_proc WHERE proname = 'notify_event'").fetchone() == body


def test_notification_payload_is_exactly_the_contracts(make_queuer: QueuerFactory, database_url: str) -> None:
    q = make_queuer()

    @q.task()
    def noop() -> None: ...

    with psycopg.connect(database_url, autocommit=True) as listen:
        listen.execute("LISTEN job")
        listen.execute("LISTEN job_archive")
        job = q.add_job(noop)
        q.start()
        q.wait_for_job_finished(job.rid, 10)
        got = [(n.channel, n.payload) for n in listen.notifies(timeout=2, stop_after=3)]
    assert got == [
        ("job", f'{{"id" : {job.id}, "rid" : "{job.rid}", "status" : "QUEUED"}}'),
        ("job", f'{{"id" : {job.id}, "rid" : "{job.rid}", "status" : "RUNNING"}}'),
        ("job_archive", f'{{"id" : {job.id}, "rid" : "{job.rid}", "status" : "SUCCEEDED"}}'),
    ]


def test_notify_event_covers_the_contracts_other_cases(
    make_queuer: QueuerFactory, database_url: str, sql: psycopg.Connection[Any]
) -> None:
    """§2.1 defines notify_event() for more than our two triggers fire: on a table named worker it
    notifies channel worker, and for DELETE it takes the old row's values. Triggers added here (an
    AFTER DELETE one, so the delete is not cancelled) exercise those branches of the function."""
    q = make_queuer()

    @q.task()
    def noop() -> None: ...

    job = q.add_job(noop)
    worker_id, worker_rid = q.worker.id, q.worker.rid
    sql.execute(
        "CREATE TRIGGER t_worker BEFORE UPDATE ON worker FOR EACH ROW EXECUTE FUNCTION notify_event()"
    )
    sql.execute("CREATE TRIGGER t_delete AFTER DELETE ON job FOR EACH ROW EXECUTE FUNCTION notify_event()")
    with psycopg.connect(database_url, autocommit=True) as listen:
        listen.execute("LISTEN job")
        listen.execute("LISTEN worker")
        sql.execute("UPDATE worker SET status = 'STOPPING' WHERE id = %s", (worker_id,))
        sql.execute("DELETE FROM job WHERE id = %s", (job.id,))
        got = [(n.channel, n.payload) for n in listen.notifies(timeout=2, stop_after=2)]
    assert got == [
        ("worker", f'{{"id" : {worker_id}, "rid" : "{worker_rid}", "status" : "STOPPING"}}'),
        ("job", f'{{"id" : {job.id}, "rid" : "{job.rid}", "status" : "QUEUED"}}'),
    ]


def test_payload_text_is_the_json_builders_for_any_rid_and_status(
    make_queuer: QueuerFactory, database_url: str, sql: psycopg.Connection[Any]
) -> None:
    """notify_event() builds its payload without json_build_object (cheaper per row); whatever the
    row holds, the text must still be the builder's to the byte: a NULL rid, and statuses another
    writer might store (quotes, backslashes, control characters, non-ASCII, empty, NULL)."""
    make_queuer()
    statuses = ["QUEUED", 'a"b\\c', "tab\there\nline\x01", "ünïcødé €", "", "\u2028</script>", None]
    with psycopg.connect(database_url, autocommit=True) as listen:
        listen.execute("LISTEN job")
        for status in statuses:
            sql.execute("INSERT INTO job (rid, status) VALUES (NULL, %s)", (status,))
        sql.execute("INSERT INTO job (status) VALUES ('QUEUED')")  # a rid from the default
        got = [n.payload for n in listen.notifies(timeout=2, stop_after=len(statuses) + 1)]
    expected = [
        row[0]
        for row in sql.execute(
            "SELECT json_build_object('id', id, 'rid', rid, 'status', status)::text FROM job ORDER BY id"
        ).fetchall()
    ]
    assert got == expected and len(got) == len(statuses) + 1
    assert got[0].endswith('"rid" : null, "status" : "QUEUED"}') and '"status" : null}' in got[-2]


def test_rows_written_by_python_carry_go_types(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    from datetime import UTC, datetime, timedelta

    q = make_queuer(
        "typed", 1, OnError(timeout=30, max_retries=3, retry_delay=1, retry_backoff=RetryBackoff.LINEAR)
    )

    @q.task()
    def noop(*args: Any) -> None: ...

    start = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    q.add_job_with_options(
        Options(
            schedule=Schedule(start=start, max_count=3, interval=timedelta(minutes=15)), metadata={"k": 1}
        ),
        noop,
        1,
        2.5,
        "x",
    )
    row = sql.execute(
        "SELECT options::text, parameters::text, parameters_keyed::text, status, scheduled_at, "
        "worker_id, attempts, results::text, error FROM job"
    ).fetchone()
    assert row is not None
    options = json.loads(row[0])
    assert options["on_error"] == {
        "timeout": 30,
        "max_retries": 3,
        "retry_delay": 1,
        "retry_backoff": "linear",
    }
    assert options["schedule"] == {
        "start": "2030-01-02T03:04:05Z",
        "max_count": 3,
        "interval": 900_000_000_000,
    }
    assert options["metadata"] == {"k": 1}
    assert '"max_retries": 3,' in row[0] and '"interval": 900000000000' in row[0]  # integers, never 3.0
    assert row[1:] == ('[1, 2.5, "x"]', "{}", "SCHEDULED", datetime(2030, 1, 2, 3, 4, 5), 0, 0, "[]", "")
    worker = sql.execute("SELECT options::text, status, max_concurrency FROM worker").fetchone()
    assert worker is not None
    assert json.loads(worker[0]) == {
        "timeout": 30,
        "max_retries": 3,
        "retry_delay": 1,
        "retry_backoff": "linear",
    }
    assert worker[1:] == ("READY", 1)


def test_job_written_the_way_go_writes_it_is_run(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    """Go's single insert: options NULL, parameters JSON null, keyed null, scheduled_at year 1 (§1.8)."""
    q = make_queuer("py", 2)
    ran = threading.Event()

    @q.task_with_name("main.GoTask")
    def go_task() -> str:
        ran.set()
        return "ok"

    row = sql.execute(
        "INSERT INTO job (options, task_name, parameters, parameters_keyed, status, scheduled_at, schedule_count) "
        "VALUES (NULL, 'main.GoTask', 'null', 'null', 'QUEUED', '0001-01-01 00:00:00', 0) RETURNING rid"
    ).fetchone()
    assert row is not None
    q.start()
    done = q.wait_for_job_finished(row[0], 10)
    assert ran.is_set() and done.status is JobStatus.SUCCEEDED and done.results == ["ok"]
    assert done.options is None and done.scheduled_at is None and done.parameters == []


def test_go_numbers_are_coerced_by_annotation(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    q = make_queuer("coerce", 1)

    @q.task()
    def typed(n: int, f: float, when: Any) -> tuple[Any, ...]:
        return n, type(n).__name__, f, type(f).__name__

    row = sql.execute(
        "INSERT INTO job (task_name, parameters) VALUES ('typed', '[3.0, 2, \"x\"]') RETURNING rid"
    ).fetchone()
    assert row is not None
    q.start()
    assert q.wait_for_job_finished(row[0], 10).results == [3, "int", 2.0, "float"]


def test_integers_are_never_written_as_floats() -> None:
    from datetime import UTC, datetime, timedelta

    from queuer import MasterSettings, Schedule
    from queuer.model.jsoncodec import dumps

    for retries in (0, 1, 3, 10_000):
        for delay in (0, 1, 2.5):
            text = dumps(
                Options(on_error=OnError(timeout=delay, max_retries=retries, retry_delay=delay)).to_json(),
                "o",
            )
            assert f'"max_retries":{retries},' in text
    for seconds in (1, 60, 86_400 * 400, 0.5):
        schedule = Schedule(
            start=datetime(2030, 1, 1, tzinfo=UTC), max_count=2, interval=timedelta(seconds=seconds)
        )
        text = dumps(schedule.to_json(), "s")
        assert f'"interval":{int(seconds * 1_000_000_000)}' in text and '"max_count":2' in text
    settings = MasterSettings(master_lock_timeout=timedelta(minutes=5), retention_archive=timedelta(days=7))
    assert settings.to_json() == {
        "master_lock_timeout": 300_000_000_000,
        "master_poll_interval": 10_000_000_000,
        "retention_archive": 604_800_000_000_000,
        "worker_stale_threshold": 300_000_000_000,
        "worker_delete_threshold": 86_400_000_000_000,
        "job_stale_threshold": 3_600_000_000_000,
    }
    assert all(type(v) is int for v in settings.to_json().values())
    # Go's "0 means default" reads as Go's defaults (its poll interval is a minute, ours 10 s).
    assert MasterSettings.from_json({}) == MasterSettings(master_poll_interval=timedelta(minutes=1))


def test_worker_rows_both_ways(make_queuer: QueuerFactory, sql: psycopg.Connection[Any]) -> None:
    q = make_queuer("py-worker", 3)
    row = sql.execute(
        "SELECT options, available_tasks, available_next_interval, status FROM worker WHERE id = %s",
        (q.worker.id,),
    ).fetchone()
    assert row == (None, [], [], "READY")  # options SQL NULL without a default, as Go writes it
    go = sql.execute(
        "INSERT INTO worker (name, options, available_tasks, available_next_interval, max_concurrency) "
        "VALUES ('go-worker', NULL, NULL, NULL, 10) RETURNING rid"
    ).fetchone()
    assert go is not None
    worker = q.get_worker(go[0])
    assert (worker.name, worker.options, worker.available_tasks, worker.available_next_interval) == (
        "go-worker",
        None,
        [],
        [],
    )


def test_table_drop_mode_never_drops_functions(
    db_config: DatabaseConfiguration, sql: psycopg.Connection[Any]
) -> None:
    from dataclasses import replace

    asyncio.run(install_schema(db_config))
    sql.execute("INSERT INTO job (task_name) VALUES ('x')")
    actions = asyncio.run(install_schema(replace(db_config, with_table_drop=True)))
    assert actions[0].startswith("dropped tables")
    assert sql.execute("SELECT count(*) FROM job").fetchone() == (0,)
    assert sql.execute("SELECT count(*) FROM pg_proc WHERE proname = 'notify_event'").fetchone() == (1,)
    assert sql.execute("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal").fetchone() == (2,)


def test_listener_accepts_any_spacing_and_ignores_unknown_keys() -> None:
    from uuid import uuid4

    from queuer.database import parse_payload

    rid = uuid4()
    for payload in (
        f'{{"id" : 5, "rid" : "{rid}", "status" : "QUEUED"}}',
        f'{{"status":"QUEUED","rid":"{rid}","id":5,"worker_id":0,"created_at":null}}',
    ):
        event = parse_payload("job", payload)
        assert event is not None and (event.id, event.rid, event.status) == (5, rid, JobStatus.QUEUED)
    assert parse_payload("job", "not json") is None
    bare = parse_payload("job", '{"status":"QUEUED"}')  # wakes workers, as Go's do
    assert bare is not None and bare.status is JobStatus.QUEUED and bare.rid is None
    assert parse_payload("job", '{"status": "NOT A STATUS", "rid": null}') is None


def test_second_installation_in_another_schema_shares_notify_event(
    db_config: DatabaseConfiguration, sql: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """One installation per database is what Go supports (§1.10); a second one still works here."""
    from dataclasses import replace

    asyncio.run(install_schema(db_config))
    asyncio.run(install_schema(replace(db_config, schema="second")))
    assert any("another queuer installation" in r.message for r in caplog.records)
    assert sql.execute("SELECT count(*) FROM pg_proc WHERE proname = 'notify_event'").fetchone() == (1,)
    triggers = sql.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid IN ('second.job'::regclass, 'second.job_archive'::regclass)"
    ).fetchone()
    assert triggers == (2,)
    sql.execute("LISTEN job")
    sql.execute("INSERT INTO second.job (task_name) VALUES ('x')")
    assert [n.channel for n in sql.notifies(timeout=2, stop_after=1)] == ["job"]

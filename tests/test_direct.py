"""Statements on libpq directly (``queuer.database.direct``: the worker cycle, add_job's insert):
placeholders, parameter text, types of the rows, errors, statements prepared on demand, the
blocking runner, cancellation, and a pooled connection handed back and taken again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from queuer import DatabaseConfiguration, JobStatus, new_queuer_with_db
from queuer.database import install_schema
from queuer.database.direct import (
    DirectConnection,
    DirectStatement,
    encode_param,
    fetch_blocking,
    prepared_names,
    to_positional,
)
from queuer.database.job_table import Claim, Finished
from queuer.database.store import CYCLE_SETTINGS, Store

from .helpers import QueuerFactory


def on_connection(
    db_config: DatabaseConfiguration, scenario: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]
) -> None:
    """Run ``scenario`` on a new autocommit async connection to the test database, then close it."""

    async def run() -> None:
        conn = await psycopg.AsyncConnection.connect(db_config.conninfo(), autocommit=True)
        try:
            await scenario(conn)
        finally:
            await conn.close()

    asyncio.run(run())


def test_placeholders_become_numbered_once_per_name() -> None:
    sql, names = to_positional("a = %(x)s AND b = %(y)s OR c = %(x)s AND d LIKE 'z%%'")
    assert sql == "a = $1 AND b = $2 OR c = $1 AND d LIKE 'z%'"
    assert names == ["x", "y"]
    with pytest.raises(ValueError, match="lone %"):
        to_positional("a = %s")


def test_parameters_in_text_form() -> None:
    rid = uuid4()
    assert encode_param(None) is None
    assert encode_param(7) == b"7"
    assert encode_param(True) == b"true"
    assert encode_param(rid) == str(rid).encode()
    assert encode_param([]) == b"{}"
    assert encode_param(['a"b', "c,d", "e\\f"]) == b'{"a\\"b","c,d","e\\\\f"}'
    assert encode_param(b"\x00\xff") == b"\\x00ff"
    assert encode_param(datetime(2030, 1, 2, 3, 4, 5, 6)) == b"2030-01-02T03:04:05.000006"
    with pytest.raises(TypeError, match="naive UTC"):  # a timestamp parameter would drop the offset
        encode_param(datetime(2030, 1, 2, tzinfo=UTC))
    with pytest.raises(TypeError, match="float"):
        encode_param(1.5)


def test_rows_errors_and_reuse_of_a_connection(db_config: DatabaseConfiguration) -> None:
    """Rows come back with psycopg's types; a server error raises psycopg's class and leaves the
    connection usable; a text[] parameter survives any element; the statement is prepared once."""
    statement = DirectStatement(
        "queuer_test_direct",
        "SELECT %(n)s::bigint AS n, %(rid)s::uuid AS rid, now() AT TIME ZONE 'UTC' AS at, "
        "'\\x0102'::bytea AS raw, NULL::text AS nothing, %(names)s::text[] AS names, "
        "1 / %(divisor)s::int AS quotient",
    )
    rid = uuid4()
    names = ['quote"d', "comma,d", "back\\slash", "{brace}", "sp ace", ""]

    async def scenario(conn: psycopg.AsyncConnection[Any]) -> None:
        direct = DirectConnection(conn, prepare=True)
        params = {"n": 5, "rid": rid, "names": names, "divisor": 1}
        rows = await direct.fetch(statement, params)
        assert len(rows) == 1
        row = rows[0]
        assert row["n"] == 5 and row["rid"] == rid and isinstance(row["rid"], UUID)
        assert isinstance(row["at"], datetime) and row["raw"] == b"\x01\x02"
        assert row["nothing"] is None and row["names"] == names and row["quotient"] == 1
        with pytest.raises(psycopg.errors.DivisionByZero):
            await direct.fetch(statement, {**params, "divisor": 0})
        assert (await direct.fetch(statement, params))[0]["n"] == 5  # still usable, still prepared
        direct.detach()
        assert prepared_names(conn) == ["queuer_test_direct"]
        cur = await conn.execute("SELECT name FROM pg_prepared_statements")
        assert await cur.fetchall() == [("queuer_test_direct",)]
        unprepared = DirectConnection(conn, prepare=False)  # as behind a transaction pooler
        assert (await unprepared.fetch(statement, params))[0]["quotient"] == 1
        unprepared.detach()
        assert prepared_names(conn) == ["queuer_test_direct"]  # nothing more prepared

    on_connection(db_config, scenario)


def test_first_use_on_a_connection_prepares_without_a_failed_attempt(
    db_config: DatabaseConfiguration,
) -> None:
    """A statement is prepared before its first use on a connection, not after a failed execute
    (which the server would log as an ERROR for every new pooled connection). Inside a transaction a
    failed attempt would abort it, so the statement after it shows whether there was one."""
    statement = DirectStatement("queuer_test_first", "SELECT %(n)s::int AS n")
    with psycopg.connect(db_config.conninfo(), autocommit=True) as conn:
        conn.execute("BEGIN")
        assert fetch_blocking(conn, statement, {"n": 1}, prepare=True) == [{"n": 1}]
        conn.execute("SELECT 1")  # InFailedSqlTransaction after any failed attempt
        conn.execute("COMMIT")

    async def scenario(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute("BEGIN")
        direct = DirectConnection(conn, prepare=True)
        assert (await direct.fetch(statement, {"n": 2}))[0]["n"] == 2
        direct.detach()
        await conn.execute("SELECT 1")
        await conn.execute("COMMIT")

    on_connection(db_config, scenario)


def test_a_statement_prepared_earlier_on_the_connection_is_used_as_it_is(
    db_config: DatabaseConfiguration,
) -> None:
    """A pooled connection keeps the statements a previous holder prepared: the next holder runs
    them without preparing again (no "already exists" clash)."""
    statement = DirectStatement("queuer_test_kept", "SELECT %(n)s::int + 1 AS m")

    async def scenario(conn: psycopg.AsyncConnection[Any]) -> None:
        first = DirectConnection(conn, prepare=True)
        assert (await first.fetch(statement, {"n": 1}))[0]["m"] == 2
        first.detach()  # not deallocated, as after an add_job_async
        second = DirectConnection(conn, prepare=True)
        assert (await second.fetch(statement, {"n": 2}))[0]["m"] == 3  # a second PREPARE would raise
        second.detach()
        cur = await conn.execute("SELECT name FROM pg_prepared_statements")
        assert await cur.fetchall() == [("queuer_test_kept",)]

    on_connection(db_config, scenario)


def test_the_blocking_runner(db_config: DatabaseConfiguration) -> None:
    """``fetch_blocking`` (add_job on the sync pool): rows with psycopg's types, bytea and timestamp
    parameters, the server's errors as psycopg's classes with the connection still usable, the
    statement prepared on first use, and a lost connection as OperationalError."""
    statement = DirectStatement(
        "queuer_test_blocking",
        "SELECT %(raw)s::bytea AS raw, %(at)s::timestamp AS at, 1 / %(divisor)s::int AS quotient",
    )
    at = datetime(2030, 1, 2, 3, 4, 5, 6)
    params = {"raw": b"\x00\xff", "at": at, "divisor": 1}
    with psycopg.connect(db_config.conninfo(), autocommit=True) as conn:
        assert fetch_blocking(conn, statement, params, prepare=True) == [
            {"raw": b"\x00\xff", "at": at, "quotient": 1}
        ]
        with pytest.raises(psycopg.errors.DivisionByZero):
            fetch_blocking(conn, statement, {**params, "divisor": 0}, prepare=True)
        assert fetch_blocking(conn, statement, params, prepare=False)[0]["quotient"] == 1
        prepared = conn.execute("SELECT name FROM pg_prepared_statements").fetchall()
        assert prepared == [("queuer_test_blocking",)]
        with psycopg.connect(db_config.conninfo(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s, 10000)", (conn.info.backend_pid,))
        with pytest.raises(psycopg.OperationalError):
            fetch_blocking(conn, statement, params, prepare=True)


def test_a_cancelled_add_job_async_is_cancelled_in_the_server(
    db_config: DatabaseConfiguration, sql: psycopg.Connection[Any]
) -> None:
    """add_job_async cancelled while its insert waits for a lock: the server is asked to cancel the
    statement (as psycopg does), so no job appears once the lock is released, and the next call
    works (the busy connection was closed, not handed out again)."""
    q = new_queuer_with_db("cancel-insert", 1, None, db_config)

    async def noop() -> None: ...

    q.add_task(noop)

    async def scenario() -> None:
        await q.add_job_async(noop)  # the pooled connection has prepared the insert
        locker = await psycopg.AsyncConnection.connect(db_config.conninfo())
        async with locker:
            async with locker.transaction():
                await locker.execute("LOCK TABLE job IN ACCESS EXCLUSIVE MODE")
                stuck = asyncio.ensure_future(q.add_job_async(noop))
                waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'job'::regclass"

                async def lock_waiter() -> bool:
                    return (await (await locker.execute(waiting)).fetchone()) != (0,)

                for _ in range(2000):  # until the insert waits for the lock (20 s at most)
                    if await lock_waiter():
                        break
                    await asyncio.sleep(0.01)
                else:
                    raise AssertionError("the insert never waited for the table lock")
                stuck.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await stuck
                for _ in range(2000):  # the server ends the waiting statement
                    if not await lock_waiter():
                        break
                    await asyncio.sleep(0.01)
                else:
                    raise AssertionError("the cancelled insert still waits for the lock")
            await q.add_job_async(noop)

    try:
        asyncio.run(scenario())
        assert sql.execute("SELECT count(*) FROM job").fetchone() == (2,)
    finally:
        q.stop()


def test_a_lost_connection_raises_operational_error(db_config: DatabaseConfiguration) -> None:
    """The server ends the backend between two statements: the reader sees it go, and the next
    statement raises psycopg's OperationalError (what the worker cycle recovers from)."""
    statement = DirectStatement("queuer_test_lost", "SELECT pg_backend_pid() AS pid")

    async def scenario(conn: psycopg.AsyncConnection[Any]) -> None:
        admin = await psycopg.AsyncConnection.connect(db_config.conninfo(), autocommit=True)
        try:
            direct = DirectConnection(conn, prepare=True)
            pid = (await direct.fetch(statement, {}))[0]["pid"]
            await admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
            with pytest.raises(psycopg.OperationalError):
                await direct.fetch(statement, {})
            direct.detach()
        finally:
            await admin.close()

    on_connection(db_config, scenario)


def test_the_cycle_connection_goes_back_clean_and_is_taken_again(db_config: DatabaseConfiguration) -> None:
    """Released (as after a failed cycle), the pooled connection has neither our session settings
    nor our prepared statements, and the next cycle prepares them again on it without a clash. A
    cycle cancelled while its statement is in flight closes its connection instead of returning
    it busy, and the next cycle runs on a new one."""

    async def scenario() -> None:
        await install_schema(db_config)
        store = Store(db_config, pool_size=1)  # one connection: the same one comes back
        await store.open()
        try:
            worker = await store.insert_worker("w", None, 1, ["t"], [])
            worker_id = worker.id
            assert await store.cycle(worker_id, uuid4(), [], [], [], Claim(1, ["t"], [])) == []
            await store._release_cycle_connection()
            async with store.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT (SELECT count(*) FROM pg_prepared_statements) AS prepared, (SELECT array_agg(name) "
                    "FROM pg_settings WHERE setting <> reset_val AND name = ANY(%s)) AS changed",
                    ([name for name, _ in CYCLE_SETTINGS],),
                )
                assert await cur.fetchone() == {"prepared": 0, "changed": None}
            assert await store.cycle(worker_id, uuid4(), [], [], [], Claim(1, ["t"], [])) == []
            assert store._cycle is not None
            taken = store._cycle.conn
            locker = await psycopg.AsyncConnection.connect(db_config.conninfo())
            async with locker, locker.transaction():
                await locker.execute("LOCK TABLE job IN ACCESS EXCLUSIVE MODE")
                stuck = asyncio.ensure_future(
                    store.cycle(worker_id, uuid4(), [], [], [], Claim(1, ["t"], []))
                )
                waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'job'::regclass"
                for _ in range(2000):  # until the cycle's statement waits for the lock (20 s at most)
                    if (await (await locker.execute(waiting)).fetchone()) != (0,):
                        break
                    await asyncio.sleep(0.01)
                else:
                    raise AssertionError("the cycle never waited for the table lock")
                assert not stuck.done()
                stuck.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await stuck
                assert taken.closed and store._cycle is None
            assert await store.cycle(worker_id, uuid4(), [], [], [], Claim(1, ["t"], [])) == []
            assert store._cycle is not None and store._cycle.conn is not taken
        finally:
            await store.close()

    asyncio.run(scenario())


def test_the_cycle_never_scans_the_queue_whole(db_config: DatabaseConfiguration) -> None:
    """The cycle's generic plan is made at a worker's first cycle, often on an empty table, and kept
    until the table is next analyzed. Made like that, it used to find the finished rows by reading
    ``job`` from end to end: every cycle on the queue that filled up afterwards read all of it. Here
    the queue fills with 3,000 jobs that nobody analyzes, and cycles claim and finish 200 of them:
    not one of them may scan ``job`` sequentially (PostgreSQL's own count for the table, which a
    backend adds its share to before it leaves ``pg_stat_activity``)."""

    async def scenario() -> None:
        other = await psycopg.AsyncConnection.connect(db_config.conninfo(), autocommit=True)

        async def scalar(query: str, *params: Any) -> int:
            row = await (await other.execute(query, params)).fetchone()
            assert row is not None
            return int(row[0])

        async def only_backends(pids: set[int]) -> None:
            """Until every other session of this database is gone (its counts are in)."""
            others = (
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_type = 'client backend' AND NOT pid = ANY(%s)"
            )
            for _ in range(3000):  # 30 s at most
                if await scalar(others, list(pids)) == 0:
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("a session did not end")

        scans = "SELECT seq_scan FROM pg_stat_user_tables WHERE relid = 'job'::regclass"
        async with other:
            await install_schema(db_config)
            store = Store(db_config, pool_size=1)
            await store.open()
            try:
                # Before the plan is made: changing the table's options would invalidate it.
                await other.execute("ALTER TABLE job SET (autovacuum_enabled = false)")
                worker = await store.insert_worker("w", None, 10, ["t"], [])
                assert (
                    await store.cycle(worker.id, worker.rid, [], [], [], Claim(10, ["t"], [])) == []
                )  # plan made
                assert store._cycle is not None
                cycle_pid = store._cycle.conn.pgconn.backend_pid
                await only_backends({other.pgconn.backend_pid, cycle_pid})  # the installer's is in
                await other.execute(
                    "INSERT INTO job (rid, task_name, status, created_at, updated_at) SELECT gen_random_uuid(), "
                    "'t', 'QUEUED', now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC' FROM generate_series(1, 3000)"
                )
                before = await scalar(scans)
                claimed = await store.cycle(worker.id, worker.rid, [], [], [], Claim(10, ["t"], []))
                for _ in range(20):
                    finished = [Finished(j.id, j.attempts, "SUCCEEDED", "[]", b"", "") for j in claimed]
                    claimed = await store.cycle(worker.id, worker.rid, finished, [], [], Claim(10, ["t"], []))
                    assert len(claimed) == 10
            finally:
                await store.close()
            await only_backends({other.pgconn.backend_pid})  # the cycle's session has ended
            assert await scalar("SELECT count(*) FROM job_archive") == 200
            assert await scalar(scans) == before

    asyncio.run(scenario())


def test_a_task_name_with_array_syntax_is_claimed(make_queuer: QueuerFactory) -> None:
    """Task names travel to the claim as a text[] literal: quotes, commas, braces and backslashes in
    a name must not change which jobs match."""
    q = make_queuer()
    name = 'odd "name", {with} \\ syntax'

    def odd() -> str:
        return "ran"

    q.add_task_with_name(odd, name)
    q.start()
    job = q.add_job(name)
    done = q.wait_for_job_finished(job.rid, timeout_seconds=20)
    assert done.status is JobStatus.SUCCEEDED and done.results == ["ran"]

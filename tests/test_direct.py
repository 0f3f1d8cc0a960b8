"""The cycle's statement on libpq directly (``queuer.database.direct``): placeholders, parameter
text, types of the rows, errors, and a pooled connection handed back and taken again."""

from __future__ import annotations

import asyncio
from datetime import datetime
from uuid import UUID, uuid4

import psycopg
import pytest
from queuer.database import install_schema
from queuer.database.direct import DirectConnection, DirectStatement, encode_param, to_positional
from queuer.database.store import Store

from queuer import DatabaseConfiguration, JobStatus

from .conftest import QueuerFactory


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

    async def scenario() -> None:
        conn = await psycopg.AsyncConnection.connect(db_config.conninfo(), autocommit=True)
        try:
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
            assert direct.detach() == ["queuer_test_direct"]
            cur = await conn.execute("SELECT name FROM pg_prepared_statements")
            assert await cur.fetchall() == [("queuer_test_direct",)]
            unprepared = DirectConnection(conn, prepare=False)  # as behind a transaction pooler
            assert (await unprepared.fetch(statement, params))[0]["quotient"] == 1
            assert unprepared.detach() == []
        finally:
            await conn.close()

    asyncio.run(scenario())


def test_a_lost_connection_raises_operational_error(db_config: DatabaseConfiguration) -> None:
    """The server ends the backend between two statements: the reader sees it go, and the next
    statement raises psycopg's OperationalError (what the worker cycle recovers from)."""
    statement = DirectStatement("queuer_test_lost", "SELECT pg_backend_pid() AS pid")

    async def scenario() -> None:
        conn = await psycopg.AsyncConnection.connect(db_config.conninfo(), autocommit=True)
        admin = await psycopg.AsyncConnection.connect(db_config.conninfo(), autocommit=True)
        try:
            direct = DirectConnection(conn, prepare=True)
            pid = (await direct.fetch(statement, {}))[0]["pid"]
            await admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
            with pytest.raises(psycopg.OperationalError):
                await direct.fetch(statement, {})
            direct.detach()
        finally:
            await conn.close()
            await admin.close()

    asyncio.run(scenario())


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
            assert await store.cycle(worker_id, uuid4(), [], [], [], 1, ["t"], []) == []
            await store._release_cycle_connection()
            async with store.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT (SELECT count(*) FROM pg_prepared_statements) AS prepared, "
                    "current_setting('plan_cache_mode') AS mode"
                )
                assert await cur.fetchone() == {"prepared": 0, "mode": "auto"}
            assert await store.cycle(worker_id, uuid4(), [], [], [], 1, ["t"], []) == []
            assert store._cycle is not None
            taken = store._cycle.conn
            locker = await psycopg.AsyncConnection.connect(db_config.conninfo())
            async with locker, locker.transaction():
                await locker.execute("LOCK TABLE job IN ACCESS EXCLUSIVE MODE")
                stuck = asyncio.ensure_future(store.cycle(worker_id, uuid4(), [], [], [], 1, ["t"], []))
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
            assert await store.cycle(worker_id, uuid4(), [], [], [], 1, ["t"], []) == []
            assert store._cycle is not None and store._cycle.conn is not taken
        finally:
            await store.close()

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

"""The worker cycle's statement and add_job's insert, run on libpq directly instead of through a
psycopg cursor.

A busy worker runs a cycle statement every millisecond or two, and the fixed share of
``AsyncConnection.execute`` (query conversion, prepared-statement bookkeeping, a generator step per
socket wait, a new cursor and row maker per call) was most of what a worker spent per job besides
running it. Here the statement is converted to ``$n`` form and prepared once per connection, its
parameters are sent as text, and its rows are loaded by psycopg's own (C) loaders: the same types
psycopg would give, for much less client time (the benchmark log has the figures). The listener
reads its notifications off libpq the same way.

The cycle's connection runs these one statement at a time through a ``DirectConnection``, which
keeps one reader on the socket while the cycle holds the connection (no reader registered and
removed for every wait); psycopg's own calls on that connection (its session settings) happen
before it is attached and after it is detached. ``add_job`` runs its insert the same way on a
pooled connection, on the loop (``DirectConnection``) or blocking (``fetch_blocking``), for the
same reason (the benchmark log has the figures).

Which of our statements each connection has prepared is remembered with the connection (a pooled
one outlives whoever holds it): a statement is prepared before its first use there, and executed
as it is afterwards. (Executing first and preparing on the server's "does not exist" would save the
record, but the server logs every such failure as an ERROR.)
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import select
import weakref
from collections.abc import Generator, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import AsyncConnection, Connection, abc, pq
from psycopg.adapt import Transformer
from psycopg.errors import error_from_result
from psycopg.pq.abc import PGconn, PGresult

_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%|%")


def to_positional(text: str) -> tuple[str, list[str]]:
    """``%(name)s`` placeholders as ``$n`` (one number per name, in order of first use) and the names
    in that order; ``%%`` becomes ``%``. Any other ``%`` is a mistake in the statement."""
    names: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            if match.group(0) == "%%":
                return "%"
            raise ValueError(f"a lone % at offset {match.start()} of a direct statement")
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PLACEHOLDER.sub(replace, text), names


def encode_param(value: Any) -> bytes | None:
    """A parameter in PostgreSQL's text format; its type comes from the statement (casts, or the
    column it is compared with or assigned to), so every value is sent untyped."""
    if value is None:
        return None
    if isinstance(value, bool):  # before int: True is an int
        return b"true" if value else b"false"
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, int | UUID):
        return str(value).encode()
    if isinstance(value, bytes):  # bytea's hex form
        return b"\\x" + value.hex().encode()
    if isinstance(value, datetime):  # a TIMESTAMP column's naive UTC value (contract §1.9)
        if value.tzinfo is not None:  # a timestamp parameter would drop the offset silently
            raise TypeError("a direct statement takes naive UTC datetimes only")
        return value.isoformat().encode()
    if isinstance(value, list | tuple):  # text[]: every element quoted, so any name is safe
        items = (str(v).replace("\\", "\\\\").replace('"', '\\"') for v in value)
        return ("{" + ",".join(f'"{item}"' for item in items) + "}").encode()
    raise TypeError(f"no text form for a direct statement parameter of type {type(value).__name__}")


class DirectStatement:
    """One statement with named parameters, in the ``$n`` form it is prepared and sent in."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name.encode()
        sql, self.params = to_positional(text)
        self.sql = sql.encode()

    def values(self, params: Mapping[str, Any]) -> list[bytes | None]:
        return [encode_param(params[name]) for name in self.params]


# The names of our statements prepared on each connection, for as long as the connection lives.
_PREPARED: weakref.WeakKeyDictionary[Connection[Any] | AsyncConnection[Any], set[bytes]] = (
    weakref.WeakKeyDictionary()
)


def prepared_names(conn: Connection[Any] | AsyncConnection[Any]) -> list[str]:
    """The names of our statements prepared on ``conn``."""
    return sorted(name.decode() for name in _PREPARED.get(conn, ()))


def forget_prepared(conn: Connection[Any] | AsyncConnection[Any], names: list[str]) -> None:
    """Record that ``names`` were deallocated on ``conn``."""
    _PREPARED.get(conn, set()).difference_update(name.encode() for name in names)


Exchange = Generator[None, PGresult, PGresult]


def _exchange(
    pgconn: PGconn, statement: DirectStatement, values: list[bytes | None], prepared: set[bytes] | None
) -> Exchange:
    """Send ``statement`` and take its reply: a generator that yields after each message it sends and
    is sent the last result of that message back (the driver waits, blocking or on the loop); it
    returns the statement's result. ``prepared``: the names prepared on the connection (updated
    here); None: unnamed statements only (behind a transaction pooler)."""
    if prepared is None:
        pgconn.send_query_params(statement.sql, values)
        return (yield)
    if statement.name not in prepared:
        pgconn.send_prepare(statement.name, statement.sql)
        _check((yield), pq.ExecStatus.COMMAND_OK)
        prepared.add(statement.name)
    pgconn.send_query_prepared(statement.name, values)
    return (yield)


class DirectConnection:
    """A pooled connection while we hold it (the cycle, for as long as it runs; an ``add_job_async``,
    for one insert): statements run on its libpq connection.

    One reader callback stays on its socket for as long as it is held, and reads whatever arrives
    into libpq at once (a reply, a notice, the server closing the connection); a statement in
    flight waits for that callback instead of registering a reader of its own for every wait.
    ``detach()`` must come before psycopg itself uses the connection again or closes it.
    """

    def __init__(self, conn: AsyncConnection[Any], prepare: bool) -> None:
        self.conn = conn
        self._prepare = prepare  # off behind a transaction pooler: unnamed statements only
        self._loop = asyncio.get_running_loop()
        self._fd = conn.pgconn.socket
        self._transformer: abc.Transformer = Transformer(conn)
        self._waiter: asyncio.Future[None] | None = None
        self._lost: psycopg.OperationalError | None = None
        self._loop.add_reader(self._fd, self._readable)

    def detach(self) -> None:
        """Stop reading the socket (what is prepared on the connection: ``prepared_names``)."""
        self._loop.remove_reader(self._fd)

    def _readable(self) -> None:
        try:
            self.conn.pgconn.consume_input()
        except psycopg.OperationalError as exc:  # gone: stop reading, the statement raises it
            self._lost = exc
            self._loop.remove_reader(self._fd)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def fetch(self, statement: DirectStatement, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run ``statement`` (the connection idle, autocommit) and return its rows as dicts."""
        known = _PREPARED.setdefault(self.conn, set()) if self._prepare else None
        exchange = _exchange(self.conn.pgconn, statement, statement.values(params), known)
        next(exchange)
        try:
            while True:
                exchange.send(await self._result())
        except StopIteration as done:
            result: PGresult = done.value
        except asyncio.CancelledError:
            # As psycopg does: ask the server to cancel the statement, so that a cancelled call
            # changes nothing there unless it had already finished. The connection stays busy; its
            # holder closes it (the cycle's release; the pool, for an insert).
            with contextlib.suppress(psycopg.Error):
                await self.conn.cancel_safe(timeout=5.0)
            raise
        return _rows(result, self._transformer)

    async def _result(self) -> PGresult:
        """Send what is buffered, then wait for the statement's last result (libpq returns one per
        statement, then None). A lost connection raises ``psycopg.OperationalError``."""
        pgconn = self.conn.pgconn
        while pgconn.flush():  # non-blocking: 1 means some is left to send (a large batch)
            await _writable(self._loop, self._fd)
        last: PGresult | None = None
        while True:
            while pgconn.is_busy():
                if self._lost is not None:
                    raise self._lost
                self._waiter = self._loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
            result = pgconn.get_result()
            if result is None:
                break
            last = result
        return _last_result(pgconn, last)


def fetch_blocking(
    conn: Connection[Any], statement: DirectStatement, params: Mapping[str, Any], prepare: bool
) -> list[dict[str, Any]]:
    """``DirectConnection.fetch`` for a blocking caller on an idle autocommit connection of its own
    (``add_job`` on the sync pool). Interrupted mid-statement, the connection is left busy and the
    pool closes it when it comes back."""
    pgconn = conn.pgconn
    known = _PREPARED.setdefault(conn, set()) if prepare else None
    exchange = _exchange(pgconn, statement, statement.values(params), known)
    next(exchange)
    try:
        while True:
            exchange.send(_result_blocking(pgconn))
    except StopIteration as done:
        result: PGresult = done.value
    except KeyboardInterrupt:  # as for a cancelled fetch above
        with contextlib.suppress(psycopg.Error):
            conn.cancel_safe(timeout=5.0)
        raise
    return _rows(result, Transformer(conn))


def _result_blocking(pgconn: PGconn) -> PGresult:
    """``DirectConnection._result``, waiting in ``poll()``."""
    poller = select.poll()
    poller.register(pgconn.socket, select.POLLOUT)
    while pgconn.flush():
        poller.poll()
    poller.modify(pgconn.socket, select.POLLIN)
    last: PGresult | None = None
    while True:
        while pgconn.is_busy():
            poller.poll()
            pgconn.consume_input()  # raises OperationalError when the connection is gone
        result = pgconn.get_result()
        if result is None:
            break
        last = result
    return _last_result(pgconn, last)


def _last_result(pgconn: PGconn, last: PGresult | None) -> PGresult:
    if last is None:
        raise psycopg.OperationalError(pgconn.error_message.decode(errors="replace") or "no result")
    return last


def _rows(result: PGresult, transformer: abc.Transformer) -> list[dict[str, Any]]:
    if result.status == pq.ExecStatus.COMMAND_OK:  # no RETURNING
        return []
    _check(result, pq.ExecStatus.TUPLES_OK)
    names = [(result.fname(i) or b"").decode() for i in range(result.nfields)]
    transformer.set_pgresult(result)

    def make_row(values: Sequence[Any]) -> dict[str, Any]:
        return dict(zip(names, values, strict=True))

    return transformer.load_rows(0, result.ntuples, make_row)


def _check(result: PGresult, expected: pq.ExecStatus) -> None:
    """Raise the server's error as psycopg would (the same exception classes)."""
    if result.status != expected:
        raise error_from_result(result, encoding="utf-8")


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(fd, wake)
    try:
        await ready
    finally:
        loop.remove_writer(fd)

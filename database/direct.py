"""The worker cycle's statement, run on libpq directly instead of through a psycopg cursor.

A busy worker runs one cycle statement every millisecond or two. Through ``AsyncConnection.execute``
each cost about 90 µs of client CPU for a trivial query on this project's machine, and its fixed
share (query conversion, prepared-statement bookkeeping, a generator step per socket wait, a new
cursor and row maker per call) was most of what a worker spent per job besides running it. Here the
statement is converted to ``$n`` form and prepared once per connection, its parameters are sent as
text, and its rows are loaded by psycopg's own (C) loaders: the same types psycopg would give, about
a third of the client time. The listener reads its notifications off libpq the same way.

Only the cycle's connection runs these, one statement at a time, through a ``DirectConnection``
that keeps one reader on the socket while the cycle holds the connection (no reader registered and
removed for every wait); psycopg's own calls on that connection (its session settings) happen
before it is attached and after it is detached.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

import psycopg
from psycopg import AsyncConnection, abc, pq
from psycopg.adapt import Transformer
from psycopg.errors import error_from_result
from psycopg.pq.abc import PGresult

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


class DirectConnection:
    """A pooled connection while the cycle holds it: statements run on its libpq connection.

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
        self._prepared: set[bytes] = set()
        self._waiter: asyncio.Future[None] | None = None
        self._lost: psycopg.OperationalError | None = None
        self._loop.add_reader(self._fd, self._readable)

    def detach(self) -> list[str]:
        """Stop reading the socket; the names of the statements prepared on the connection (for
        the caller to deallocate, or to close the connection)."""
        self._loop.remove_reader(self._fd)
        prepared, self._prepared = self._prepared, set()
        return sorted(name.decode() for name in prepared)

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
        pgconn = self.conn.pgconn
        values = statement.values(params)
        if not self._prepare:
            pgconn.send_query_params(statement.sql, values)
            return self._rows(await self._result())
        if statement.name not in self._prepared:
            pgconn.send_prepare(statement.name, statement.sql)
            _check(await self._result(), pq.ExecStatus.COMMAND_OK)
            self._prepared.add(statement.name)
        pgconn.send_query_prepared(statement.name, values)
        return self._rows(await self._result())

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
        if last is None:
            raise psycopg.OperationalError(pgconn.error_message.decode(errors="replace") or "no result")
        return last

    def _rows(self, result: PGresult) -> list[dict[str, Any]]:
        if result.status == pq.ExecStatus.COMMAND_OK:  # no RETURNING
            return []
        _check(result, pq.ExecStatus.TUPLES_OK)
        names = [(result.fname(i) or b"").decode() for i in range(result.nfields)]
        self._transformer.set_pgresult(result)

        def make_row(values: Sequence[Any]) -> dict[str, Any]:
            return dict(zip(names, values, strict=True))

        return self._transformer.load_rows(0, result.ntuples, make_row)


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

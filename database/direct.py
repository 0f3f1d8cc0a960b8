"""The worker cycle's statement, run on libpq directly instead of through a psycopg cursor.

A busy worker runs one cycle statement every millisecond or two. Through ``AsyncConnection.execute``
each cost about 90 µs of client CPU for a trivial query on this project's machine, and its fixed
share (query conversion, prepared-statement bookkeeping, a generator step per socket wait, a new
cursor and row maker per call) was most of what a worker spent per job besides running it. Here the
statement is converted to ``$n`` form and prepared once per connection, its parameters are sent as
text, and its rows are loaded by psycopg's own (C) loaders: the same types psycopg would give, about
a third of the client time. The listener reads its notifications off libpq the same way.

Only the cycle's connection runs these, one statement at a time; psycopg's own calls on that
connection (its session settings) happen while no statement of ours is in flight.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

import psycopg
from psycopg import AsyncConnection, abc, pq
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
    if isinstance(value, list | tuple):  # text[]: every element quoted, so any name is safe
        items = (str(v).replace("\\", "\\\\").replace('"', '\\"') for v in value)
        return ("{" + ",".join(f'"{item}"' for item in items) + "}").encode()
    raise TypeError(f"no text form for a direct statement parameter of type {type(value).__name__}")


class DirectStatement:
    """One statement with named parameters, run as described in the module docstring."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name.encode()
        sql, self.params = to_positional(text)
        self.sql = sql.encode()
        # Per connection: a Transformer for its rows, present once the statement is prepared there.
        self._prepared: weakref.WeakKeyDictionary[AsyncConnection[Any], abc.Transformer] = (
            weakref.WeakKeyDictionary()
        )

    def forget(self, conn: AsyncConnection[Any]) -> bool:
        """Whether the statement was prepared on ``conn``; from now on it counts as not prepared (the
        caller deallocates it, or closes the connection)."""
        return self._prepared.pop(conn, None) is not None

    async def fetch(
        self, conn: AsyncConnection[Any], params: Mapping[str, Any], prepare: bool = True
    ) -> list[dict[str, Any]]:
        """Run the statement on ``conn`` (idle, autocommit) and return its rows as dicts. With
        ``prepare`` off (behind a transaction pooler) it is parsed anew each time, unnamed."""
        pgconn = conn.pgconn
        values = [encode_param(params[name]) for name in self.params]
        if not prepare:
            pgconn.send_query_params(self.sql, values)
            return self._rows(await _result(pgconn), Transformer(conn))
        transformer = self._prepared.get(conn)
        if transformer is None:
            pgconn.send_prepare(self.name, self.sql)
            _check(await _result(pgconn), pq.ExecStatus.COMMAND_OK)
            transformer = self._prepared[conn] = Transformer(conn)
        pgconn.send_query_prepared(self.name, values)
        return self._rows(await _result(pgconn), transformer)

    @staticmethod
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


async def _result(pgconn: PGconn) -> PGresult:
    """Send what is buffered, then wait for the statement's last result (libpq returns one per
    statement, then None). Errors of the connection itself raise ``psycopg.OperationalError``."""
    loop = asyncio.get_running_loop()
    while pgconn.flush():  # the connection is non-blocking: 1 means some is left to send
        await _ready(loop, pgconn.socket, write=True)
    last: PGresult | None = None
    while True:
        while pgconn.is_busy():
            await _ready(loop, pgconn.socket, write=False)
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            break
        last = result
    if last is None:
        raise psycopg.OperationalError(
            pgconn.error_message.decode(errors="replace") or "no result from the server"
        )
    return last


async def _ready(loop: asyncio.AbstractEventLoop, fd: int, write: bool) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    if write:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)

"""Binary COPY of many jobs into ``job`` (``add_jobs``), on a pooled or on the caller's connection.

Rows arrive with their JSON already encoded (validation needs it anyway), so a jsonb dumper that
sends the text as is replaces psycopg's, which would encode it a second time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncCursor, Cursor, postgres, pq
from psycopg.adapt import Dumper

from .job_table import COPY_TYPES, NOW_UTC, NewJob

SERVER_NOW = f"SELECT {NOW_UTC}"


class _EncodedJsonbDumper(Dumper):
    """Binary jsonb from text that is already JSON: version byte 1, then the UTF-8 text."""

    format = pq.Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + str(obj).encode()


def copy_row(new: NewJob, now: Any) -> tuple[Any, ...]:
    """The COPY row of one job; created_at/updated_at are the server's transaction time."""
    return (*new.params(), now, now)


def _prepare(cursor: Cursor[Any] | AsyncCursor[Any]) -> None:
    cursor.adapters.register_dumper(None, _EncodedJsonbDumper)


def copy_jobs(cursor: Cursor[Any], statement: str, jobs: Sequence[NewJob]) -> None:
    """COPY ``jobs`` on a sync cursor (the caller's transaction)."""
    _prepare(cursor)
    row = cursor.execute(SERVER_NOW).fetchone()
    now = row[0] if isinstance(row, tuple) else next(iter(row.values()))  # tuple or dict rows
    with cursor.copy(statement) as copy:
        copy.set_types(COPY_TYPES)
        for new in jobs:
            copy.write_row(copy_row(new, now))


async def copy_jobs_async(cursor: AsyncCursor[Any], statement: str, jobs: Sequence[NewJob]) -> None:
    """COPY ``jobs`` on an async cursor."""
    _prepare(cursor)
    await cursor.execute(SERVER_NOW)
    row = await cursor.fetchone()
    now = row[0] if isinstance(row, tuple) else next(iter(row.values()))
    async with cursor.copy(statement) as copy:
        copy.set_types(COPY_TYPES)
        for new in jobs:
            await copy.write_row(copy_row(new, now))

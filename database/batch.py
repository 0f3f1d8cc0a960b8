"""Binary COPY of many jobs into ``job`` (``add_jobs``), on a pooled or on the caller's connection.

The COPY stream is built here in PostgreSQL's binary format (header, one tuple per job, trailer)
and written in large chunks: per-row adaptation in the driver cost more than the server's work.
Rows arrive with their JSON already encoded by validation, so nothing is encoded twice.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from psycopg import AsyncCursor, Cursor

from .fragments import NOW_UTC
from .job_table import NewJob

SERVER_NOW = f"SELECT {NOW_UTC}"
_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)
_FIELDS = 12  # the COPY_COLUMNS of job_table
_PG_EPOCH = datetime(2000, 1, 1)
_NULL = struct.pack(">i", -1)
_CHUNK_ROWS = 2000


def _timestamp(value: datetime | None) -> bytes:
    """A ``timestamp`` field: int64 microseconds since 2000-01-01 (naive UTC value)."""
    if value is None:
        return _NULL
    delta = value - _PG_EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return struct.pack(">iq", 8, micros)


def _text(value: str, jsonb: bool = False) -> bytes:
    data = value.encode()
    if jsonb:  # jsonb binary format: version byte 1, then the JSON text
        return struct.pack(">ib", len(data) + 1, 1) + data
    return struct.pack(">i", len(data)) + data


def encode_rows(jobs: Sequence[NewJob], now: datetime) -> Iterator[bytes]:
    """The COPY stream for ``jobs`` in chunks: header, tuples (COPY_COLUMNS order), trailer."""
    now_field = _timestamp(now)
    head = struct.pack(">hi", _FIELDS, 16)
    parts: list[bytes] = [_HEADER]
    for new in jobs:
        parts.append(
            head
            + new.rid.bytes
            + _text(new.options_json, jsonb=True)
            + _text(new.task_name)
            + _text(new.parameters_json, jsonb=True)
            + _text(new.parameters_keyed_json, jsonb=True)
            + _text(new.status)
            + _timestamp(new.scheduled_at)
            + struct.pack(">ii", 4, new.schedule_count)
            + struct.pack(">i", len(new.parameters_encrypted))
            + new.parameters_encrypted
            + struct.pack(">i", len(new.parameters_keyed_encrypted))
            + new.parameters_keyed_encrypted
            + now_field
            + now_field
        )
        if len(parts) >= _CHUNK_ROWS:
            yield b"".join(parts)
            parts = []
    parts.append(_TRAILER)
    yield b"".join(parts)


def _first(row: Any) -> Any:
    return row[0] if isinstance(row, tuple) else next(iter(row.values()))  # tuple or dict rows


def copy_jobs(cursor: Cursor[Any], statement: str, jobs: Sequence[NewJob]) -> None:
    """COPY ``jobs`` on a sync cursor (the caller's transaction or a pooled one)."""
    now = _first(cursor.execute(SERVER_NOW).fetchone())
    with cursor.copy(statement) as copy:
        for chunk in encode_rows(jobs, now):
            copy.write(chunk)


async def copy_jobs_async(cursor: AsyncCursor[Any], statement: str, jobs: Sequence[NewJob]) -> None:
    """COPY ``jobs`` on an async cursor."""
    await cursor.execute(SERVER_NOW)
    now = _first(await cursor.fetchone())
    async with cursor.copy(statement) as copy:
        for chunk in encode_rows(jobs, now):
            await copy.write(chunk)

"""One clear line for each way a first connection fails, so users see the cause, not libpq's text."""

from __future__ import annotations

import psycopg

from queuer.model import DatabaseConnectionError

from .config import DatabaseConfiguration


def describe(exc: psycopg.Error, config: DatabaseConfiguration) -> DatabaseConnectionError:
    """A ``DatabaseConnectionError`` saying what went wrong and what to set; raise it ``from exc``."""
    text = str(exc)
    lower = text.lower()
    where = f"{config.host}:{config.port}"
    detail = _last_fatal_line(text)
    if (
        "password authentication failed" in lower
        or "no password supplied" in lower
        or ("role" in lower and "does not exist" in lower)
    ):
        return DatabaseConnectionError(
            f"authentication failed for user {config.username!r} at {where}: {detail} "
            "(check QUEUER_DB_USERNAME and QUEUER_DB_PASSWORD)"
        )
    if "database" in lower and "does not exist" in lower:
        return DatabaseConnectionError(
            f"database {config.database!r} does not exist at {where} "
            "(create it, or set QUEUER_DB_DATABASE to one that exists)"
        )
    if "ssl" in lower and ("not support ssl" in lower or "ssl was required" in lower or "ssl off" in lower):
        return DatabaseConnectionError(
            f"the server at {where} refused SSL but sslmode is {config.sslmode!r}: {detail} "
            "(set QUEUER_DB_SSLMODE=prefer, or disable, to connect without it)"
        )
    return DatabaseConnectionError(f"cannot reach the database server at {where}: {detail}")


def _last_fatal_line(text: str) -> str:
    """libpq's most specific line (the last non-hint one), without its ``FATAL:`` prefix."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    lines = [line for line in lines if not line.lower().startswith(("is the server", "hint:"))] or lines
    line = lines[-1] if lines else type(text).__name__
    for prefix in ("FATAL:", "connection failed:"):
        if line.startswith(prefix):
            line = line[len(prefix) :].strip()
    return line


def connection_lost(exc: psycopg.DatabaseError) -> bool:
    """The error says the connection went away (the statement may or may not have committed), not
    that the server refused the statement: an operational error, or one with no SQLSTATE (libpq's
    own "server closed the connection unexpectedly")."""
    return isinstance(exc, psycopg.OperationalError) or exc.sqlstate is None

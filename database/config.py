"""Where the database is: ``DatabaseConfiguration`` and its reading from the environment (§7.1)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from psycopg.conninfo import make_conninfo

from queuer.model import ConfigurationError

APPLICATION_NAME = "queuer"
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_ENV_PREFIX = "QUEUER_DB_"


@dataclass(frozen=True)
class DatabaseConfiguration:
    """Connection settings of one queuer installation.

    The schema becomes the whole ``search_path`` of every session (as Go does) and is also quoted
    into every statement. It must be a lower-case SQL identifier so both agree.
    """

    host: str = "127.0.0.1"
    port: int = 5432
    database: str = "postgres"
    username: str = "postgres"
    password: str = ""
    schema: str = "public"
    sslmode: str = "prefer"
    with_table_drop: bool = False
    with_timescale: bool | None = False
    listen_dsn: str | None = None
    behind_pooler: bool = False

    def __post_init__(self) -> None:
        if not _SCHEMA_RE.match(self.schema or ""):
            raise ConfigurationError(
                f"schema {self.schema!r} must be a lower-case identifier (a-z, 0-9, _; at most 63)"
            )
        if not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise ConfigurationError(f"port must be 1..65535, got {self.port!r}")
        for name in ("host", "database", "username"):
            if not getattr(self, name):
                raise ConfigurationError(f"database {name} must not be empty")

    def conninfo(self) -> str:
        """A libpq connection string (values escaped, unlike Go's DSN)."""
        return make_conninfo(
            host=self.host,
            port=self.port,
            dbname=self.database,
            user=self.username,
            password=self.password or None,
            sslmode=self.sslmode,
        )

    def connection_string(self) -> str:
        """The same libpq connection string (queuerPy's name for ``conninfo``)."""
        return self.conninfo()

    def connect_kwargs(self) -> dict[str, Any]:
        """Session settings of every connection: application name, search_path, UTC (§1.9, §7),
        and no JIT: a queue's statements are short, and on a big table the planner's cost
        estimates switch JIT on for statements it then slows by its compile time.

        Behind a transaction-mode pooler (PgBouncer) no startup options can be sent; nothing
        depends on them: every statement is schema-qualified and writes UTC explicitly."""
        if self.behind_pooler:
            return {"application_name": APPLICATION_NAME}
        return {
            "application_name": APPLICATION_NAME,
            "options": f"-c search_path={self.schema} -c TimeZone=UTC -c jit=off",
        }

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> DatabaseConfiguration:
        """From a ``postgresql://user:pass@host:port/db?schema=...&sslmode=...`` URL."""
        parsed = urlparse(url)
        if parsed.scheme not in {"postgres", "postgresql"}:
            raise ConfigurationError("QUEUER_DB_URL must start with postgresql://")
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        try:
            port = parsed.port or int(query.get("port", 5432))
        except ValueError as exc:
            raise ConfigurationError(f"the database URL's port is not a port number: {exc}") from exc
        values: dict[str, Any] = {
            "host": query.get("host") or _url_host(parsed.netloc) or "127.0.0.1",
            "port": port,
            "database": unquote(parsed.path.lstrip("/")) or "postgres",
            "username": unquote(parsed.username or "") or "postgres",
            "password": unquote(parsed.password or ""),
            "sslmode": query.get("sslmode", "prefer"),
        }
        if "schema" in query:
            values["schema"] = query["schema"]
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DatabaseConfiguration:
        """Read ``QUEUER_DB_*`` with Go's semantics, or ``QUEUER_DB_URL`` as one DSN.

        ``QUEUER_DB_WITH_TIMESCALE`` is on unless exactly ``false`` (as in Go). Unset means "use it
        where the extension is available" (``None``); set and not ``false`` means "wanted" (a warning
        when it is missing); ``false`` means off. ``QUEUER_DB_WITH_TABLE_DROP`` is on only when
        exactly ``true``. ``QUEUER_DB_LISTEN_URL`` gives the listener its own direct DSN, and
        ``QUEUER_DB_BEHIND_POOLER=true`` says the rest goes through a transaction-mode pooler.
        """
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(_ENV_PREFIX + name)
            return value.strip() if value and value.strip() else None

        flags: dict[str, Any] = {
            "with_table_drop": get("WITH_TABLE_DROP") == "true",
            "with_timescale": None if get("WITH_TIMESCALE") is None else get("WITH_TIMESCALE") != "false",
            "listen_dsn": get("LISTEN_URL"),
            "behind_pooler": get("BEHIND_POOLER") == "true",
        }
        if get("SCHEMA"):
            flags["schema"] = get("SCHEMA")
        url = get("URL")
        if url:
            return cls.from_url(url, **flags)
        required = ("HOST", "PORT", "DATABASE", "USERNAME")
        missing = [_ENV_PREFIX + name for name in required if not get(name)]
        if missing:
            raise ConfigurationError("database not configured: set QUEUER_DB_URL or " + ", ".join(missing))
        try:
            port = int(get("PORT") or "")
        except ValueError as exc:
            raise ConfigurationError(f"QUEUER_DB_PORT must be a number, got {get('PORT')!r}") from exc
        return cls(
            host=get("HOST") or "",
            port=port,
            database=get("DATABASE") or "",
            username=get("USERNAME") or "",
            password=get("PASSWORD") or "",
            sslmode=get("SSLMODE") or "prefer",
            **flags,
        )


def _url_host(netloc: str) -> str:
    """The host of a URL's authority part, percent-decoded and as written: libpq accepts a Unix
    socket directory there (``postgresql://%2Fvar%2Frun%2Fpostgresql/db``), which ``urlparse``'s
    ``hostname`` would leave encoded and lower-case."""
    host_port = netloc.rpartition("@")[2]
    if host_port.startswith("["):  # an IPv6 address
        return host_port[1:].partition("]")[0]
    return unquote(host_port.partition(":")[0])


def env_is_configured(env: Mapping[str, str] | None = None) -> bool:
    """True when the environment names a database (used by the example to pick embedded mode)."""
    env = os.environ if env is None else env
    return bool(env.get("QUEUER_DB_URL") or env.get("QUEUER_DB_HOST"))

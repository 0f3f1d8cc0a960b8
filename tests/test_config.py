"""Connection URLs: the forms libpq accepts are read the way libpq reads them."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from queuer import ConfigurationError, DatabaseConfiguration


def test_url_parts_are_decoded_and_keep_their_case() -> None:
    config = DatabaseConfiguration.from_url(
        "postgresql://app%40corp:p%3Ass@%2Fvar%2Frun%2FPostgres:5433/my%20db?schema=jobs&sslmode=disable"
    )
    assert (config.host, config.port, config.database) == ("/var/run/Postgres", 5433, "my db")
    assert (config.username, config.password, config.schema, config.sslmode) == (
        "app@corp",
        "p:ss",
        "jobs",
        "disable",
    )
    assert DatabaseConfiguration.from_url("postgresql://u@[::1]:6000/db").host == "::1"
    assert DatabaseConfiguration.from_url("postgresql://u@DB.Example.com/db").host == "DB.Example.com"
    assert DatabaseConfiguration.from_url("postgresql://u@/db?host=/tmp/pg").host == "/tmp/pg"
    assert DatabaseConfiguration.from_url("postgresql:///db").host == "127.0.0.1"


@pytest.mark.parametrize("url", ["postgresql://u@h:99999/db", "postgresql://u@h:five/db", "mysql://u@h/db"])
def test_a_bad_url_raises_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        DatabaseConfiguration.from_url(url)


def test_the_server_is_reached_with_its_host_in_the_authority_part(server_dsn: str) -> None:
    """The test server's own address (a socket directory for the embedded server) written where
    libpq's documentation puts it, percent-encoded, reaches the server."""
    params: dict[str, Any] = psycopg.conninfo.conninfo_to_dict(server_dsn)
    host = str(params.get("host") or "127.0.0.1")
    user = quote(str(params.get("user") or "postgres"), safe="")
    password = f":{quote(str(params['password']), safe='')}" if params.get("password") else ""
    url = f"postgresql://{user}{password}@{quote(host, safe='')}:{params.get('port') or 5432}/postgres"
    config = DatabaseConfiguration.from_url(url, sslmode="disable")
    assert config.host == host
    with psycopg.connect(config.conninfo()) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("postgres",)

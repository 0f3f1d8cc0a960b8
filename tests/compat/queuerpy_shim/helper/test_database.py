"""queuerPy's test mixins on queuer's test server: a fresh database per test class (instead of a
container), with the tables dropped by every new Queuer as queuerPy's configuration asks."""

from __future__ import annotations

import os
import uuid
from typing import Any

import psycopg

from queuer import DatabaseConfiguration


class TimescaleTestMixin:
    db_config: DatabaseConfiguration

    @classmethod
    def setup_class(cls) -> None:
        server = os.environ["QUEUER_TEST_DSN"]
        cls._database = f"queuerpy_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{cls._database}"')
        params = psycopg.conninfo.conninfo_to_dict(server)
        cls.db_config = DatabaseConfiguration(
            host=str(params.get("host") or "127.0.0.1"),
            port=int(params.get("port") or 5432),
            database=cls._database,
            username=str(params.get("user") or "postgres"),
            password=str(params.get("password") or ""),
            sslmode="disable",
            with_table_drop=True,
            with_timescale=False,
        )
        for name, value in (
            ("HOST", cls.db_config.host),
            ("PORT", str(cls.db_config.port)),
            ("DATABASE", cls._database),
            ("USERNAME", cls.db_config.username),
            ("PASSWORD", cls.db_config.password),
            ("SCHEMA", "public"),
            ("SSLMODE", "disable"),
            ("WITH_TABLE_DROP", "true"),
            ("WITH_TIMESCALE", "false"),
        ):
            os.environ[f"QUEUER_DB_{name}"] = value

    @classmethod
    def teardown_class(cls) -> None:
        with psycopg.connect(os.environ["QUEUER_TEST_DSN"], autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{cls._database}" WITH (FORCE)')

    def setup_method(self, method: Any = None) -> None:
        pass

    def teardown_method(self, method: Any = None) -> None:
        pass

    def tearDown(self) -> None:
        pass


PostgresTestMixin = TimescaleTestMixin

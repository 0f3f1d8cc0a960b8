"""Database access of queuer: configuration, pool, schema installer, one module per table, LISTEN."""

from .config import DatabaseConfiguration, env_is_configured
from .job_table import COPY_COLUMNS, JobTable, NewJob, cycle_params
from .listener import Listener, parse_payload
from .pool import PoolType, connection_kwargs, make_pool
from .schema import install_schema
from .worker_table import WorkerTable

__all__ = [
    "COPY_COLUMNS",
    "DatabaseConfiguration",
    "JobTable",
    "Listener",
    "NewJob",
    "PoolType",
    "WorkerTable",
    "connection_kwargs",
    "cycle_params",
    "env_is_configured",
    "install_schema",
    "make_pool",
    "parse_payload",
]

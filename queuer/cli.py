"""The ``queuer`` command (also ``python -m queuer``): run a worker, look at and steer the queue.

Errors an operator can fix (no database, no schema, a bad rid) print one line on stderr and exit
with status 2 (1 for "not found"); no tracebacks.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from enum import Enum
from typing import Any
from uuid import UUID

import psycopg

from queuer.database import DatabaseConfiguration, install_schema
from queuer.model import (
    JobNotFoundError,
    JobStatus,
    QueuerError,
    SchemaMissingError,
    WorkerNotFoundError,
    WorkerStatus,
)

from .client import Client

EXIT_NOT_FOUND = 1
EXIT_ERROR = 2


def _plain(value: Any) -> Any:
    """JSON-ready form of records: UUIDs and times as text, enums as their values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, UUID | datetime):
        return str(value) if isinstance(value, UUID) else value.isoformat()
    if hasattr(value, "total_seconds"):
        return value.total_seconds()
    return value


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str) and "T" in value and value[:4].isdigit():
        return value[:19].replace("T", " ")
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 48 else text[:45] + "..."


def _print(args: argparse.Namespace, data: Any, columns: Sequence[str]) -> None:
    plain = _plain(data)
    if args.json:
        print(json.dumps(plain, indent=2))
    elif isinstance(plain, list):
        print(_table(plain, columns))
    else:
        width = max(len(k) for k in plain)
        for key, value in plain.items():
            print(f"{key.ljust(width)}  {value if isinstance(value, str) else json.dumps(value)}")


JOB_COLUMNS = (
    "id",
    "rid",
    "task_name",
    "status",
    "attempts",
    "worker_id",
    "created_at",
    "scheduled_at",
    "error",
)
WORKER_COLUMNS = ("id", "rid", "name", "status", "max_concurrency", "available_tasks", "updated_at")


def _config(args: argparse.Namespace) -> DatabaseConfiguration:
    if args.dsn:
        return DatabaseConfiguration.from_url(args.dsn, **({"schema": args.schema} if args.schema else {}))
    config = DatabaseConfiguration.from_env()
    return dataclasses.replace(config, schema=args.schema) if args.schema else config


def _client(args: argparse.Namespace) -> Client:
    """A producer client for one command: it never registers a worker row, and it refuses to run
    where the schema is missing rather than install it (that is ``queuer init``)."""
    return Client(_config(args), os.environ.get("QUEUER_ENCRYPTION_KEY") or None, pool_size=2, install=False)


# -- commands ---------------------------------------------------------------------------------------
def cmd_init(args: argparse.Namespace) -> int:
    config = _config(args)
    actions = asyncio.run(install_schema(config))
    if args.json:
        print(json.dumps({"schema": config.schema, "actions": actions}))
    else:
        print(
            "\n".join(f"{config.schema}: {a}" for a in actions)
            if actions
            else f"{config.schema}: schema is up to date"
        )
    return 0


def _run(args: argparse.Namespace, action: Callable[[Client], Any], columns: Sequence[str] = ()) -> int:
    """Open the database, do one thing, close it, print what came back."""
    with _client(args) as client:
        data = action(client)
    _print(args, data, columns)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    if args.what in ("jobs", "archive"):
        ended = args.what == "archive"
        return _run(
            args,
            lambda c: (c.get_jobs_ended if ended else c.get_jobs)(
                args.last_id, args.limit, status=args.status, task=args.task, search=args.search
            ),
            JOB_COLUMNS,
        )
    if args.what == "workers":
        return _run(
            args,
            lambda c: c.get_workers(args.last_id, args.limit, status=args.status, search=args.search),
            WORKER_COLUMNS,
        )
    return _run(
        args,
        lambda c: c.get_connections(),
        ("pid", "usename", "application_name", "state", "backend_start", "query"),
    )


def cmd_get(args: argparse.Namespace) -> int:
    """``get job RID`` finds the job wherever it is (queued, running or archived); ``get archive``
    looks only in the archive."""
    if args.what == "worker":
        return _run(args, lambda c: c.get_worker(args.rid))
    if args.what == "archive":
        return _run(args, lambda c: c.get_job_ended(args.rid))
    return _run(args, lambda c: c.find_job(args.rid))


def _confirm(args: argparse.Namespace, action: Callable[[Client], Any], say: Callable[[Any], str]) -> int:
    """Do one change and say what it did in one line (the record itself with ``--json``)."""
    with _client(args) as client:
        data = action(client)
    if args.json:
        _print(args, data, ())
    else:
        print(say(data))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    return _confirm(
        args,
        lambda c: c.cancel_job(args.rid),
        lambda job: f"cancelled job {job.rid} ({job.task_name}); it is archived as {job.status.value}",
    )


def cmd_stop(args: argparse.Namespace) -> int:
    how = "to drain and stop (STOPPING)" if args.graceful else "to stop now (STOPPED)"
    return _confirm(
        args,
        lambda c: c.stop_worker_gracefully(args.rid) if args.graceful else c.stop_worker(args.rid),
        lambda w: f"asked worker {w.rid} ({w.name}) {how}; its row says {w.status.value}",
    )


QUEUE_COLUMNS = (
    "name",
    "queued",
    "scheduled",
    "running",
    "paused",
    "concurrency",
    "rate",
    "per_seconds",
    "oldest_queued_seconds",
)


def cmd_queue(args: argparse.Namespace) -> int:
    """``queue list``, ``queue pause|resume NAME``, ``queue limit NAME [--concurrency] [--rate --per]``."""
    if args.action == "list":
        return _run(args, lambda c: [q.to_json() for q in c.get_queues()], QUEUE_COLUMNS)
    if not args.name:
        raise QueuerError(f"queue {args.action} needs the queue's NAME")
    if args.action in ("pause", "resume"):
        paused = args.action == "pause"
        return _confirm(
            args,
            lambda c: c.pause_queue(args.name) if paused else c.resume_queue(args.name),
            lambda _: f"queue {args.name} {'paused: its jobs stay queued' if paused else 'resumed'}",
        )
    per = timedelta(seconds=args.per)
    return _confirm(
        args,
        lambda c: c.set_queue_limits(args.name, concurrency=args.concurrency, rate=args.rate, per=per),
        lambda limits: (
            f"queue {args.name}: "
            + (
                ", ".join(
                    part
                    for part in (
                        f"at most {limits.concurrency} running" if limits.concurrency is not None else "",
                        f"at most {limits.rate} starts per {args.per:g}s" if limits.rate is not None else "",
                    )
                    if part
                )
                or "no limits"
            )
        ),
    )


def cmd_workflow(args: argparse.Namespace) -> int:
    """``workflow show RID``: a chain or group, its status, and each member in order."""
    with _client(args) as client:
        workflow = client.get_workflow(args.rid)
    rows = [
        {
            "position": i,
            "rid": str(m.rid),
            "task_name": m.task_name,
            "status": m.status.value,
            "attempts": m.attempts,
            "error": m.error,
        }
        for i, m in enumerate(workflow.members)
    ]
    if args.json:
        print(
            json.dumps(
                {
                    "rid": str(workflow.rid),
                    "kind": workflow.kind,
                    "status": workflow.status.value,
                    "members": rows,
                    "results": _plain(workflow.results),
                },
                indent=2,
            )
        )
    else:
        print(f"{workflow.kind} {workflow.rid}: {workflow.status.value}")
        print(_table(rows, ("position", "rid", "task_name", "status", "attempts", "error")))
    return 0


PERIODIC_COLUMNS = ("name", "task_name", "schedule", "timezone", "last_run", "next_run", "active")


def cmd_periodic(args: argparse.Namespace) -> int:
    """``periodic list``: every declared schedule with its last and next run."""
    return _run(args, lambda c: c.get_periodic(), PERIODIC_COLUMNS)


def cmd_readd(args: argparse.Namespace) -> int:
    return _run(args, lambda c: c.readd_job_from_archive(args.rid))


def cmd_stats(args: argparse.Namespace) -> int:
    client = _client(args)
    try:
        while True:
            stats = client.get_stats()
            if args.json:
                print(json.dumps(stats), flush=True)
            else:
                if args.watch:
                    print("\033[2J\033[H", end="")
                print(_table(stats["counts"], ("table", "status", "task", "count")))
                oldest = stats["oldest_queued_seconds"]
                print(
                    f"\nfinished in the last minute: {stats['finished_last_minute']} "
                    f"({stats['throughput_per_second']}/s)   oldest queued job: "
                    f"{'-' if oldest is None else f'{oldest:.1f}s'}   master: {stats['master_worker_rid'] or '-'}",
                    flush=True,
                )
            if not args.watch:
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
    finally:
        client.close()


def cmd_worker(args: argparse.Namespace) -> int:
    """Run the Queuer a user module defines, until SIGTERM/SIGINT (then stop gracefully)."""
    from .client import open_clients
    from .core import Queuer

    if args.dsn:
        os.environ["QUEUER_DB_URL"] = args.dsn
    if args.schema:
        os.environ["QUEUER_DB_SCHEMA"] = args.schema
    module_name, _, attr = args.target.partition(":")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
        target = getattr(module, attr or "queuer")
        q = target() if callable(target) and not isinstance(target, Queuer) else target
        if not isinstance(q, Queuer):
            raise QueuerError(f"{args.target!r} is not a Queuer (or a function returning one)")
    except BaseException as exc:
        # Workers the application built before it failed must not stay behind as rows.
        for made in open_clients():
            if isinstance(made, Queuer):
                made.discard()
            else:
                made.close()
        if isinstance(exc, QueuerError):
            raise
        if isinstance(exc, Exception):
            raise QueuerError(f"cannot load {args.target!r}: {type(exc).__name__}: {exc}") from exc
        raise
    if args.name or args.concurrency:
        q.update_worker(name=args.name, max_concurrency=args.concurrency)
    if args.queues:
        q.set_queues(args.queues)
    if args.include:
        q.include(*args.include.split(","))
    if args.metrics_port:
        q.serve_metrics(args.metrics_port, args.metrics_host)
    stopping = threading.Event()

    def on_signal(signum: int, _: Any) -> None:
        if stopping.is_set():
            return
        stopping.set()
        logging.getLogger("queuer").info("signal %s: stopping gracefully", signal.Signals(signum).name)
        threading.Thread(target=q.stop, kwargs={"grace_seconds": args.grace}, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    q.start(master=not args.no_master)
    logging.getLogger("queuer").info(
        "worker %s (%s) running tasks %s with concurrency %d on %s",
        q.worker.name,
        q.worker.rid,
        ", ".join(q.registry.tasks) or "-",
        q.max_concurrency,
        f"queues {', '.join(q.queues)}" if q.queues else "every queue",
    )
    q.wait_until_stopped()
    q.stop()
    return 0


DASHBOARD_TOKEN_ENV = "QUEUER_DASHBOARD_TOKEN"
DASHBOARD_USER_ENV = "QUEUER_DASHBOARD_USER"
DASHBOARD_PASSWORD_ENV = "QUEUER_DASHBOARD_PASSWORD"


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Serve the dashboard until interrupted. Credentials come from the environment, never from
    the command line (where every user of the machine could read them)."""
    try:
        import uvicorn

        from queuer.dashboard.app import create_app
    except ImportError as exc:
        raise QueuerError(f'the dashboard needs its extra: pip install "queuer[dashboard]" ({exc})') from exc
    user, password = os.environ.get(DASHBOARD_USER_ENV), os.environ.get(DASHBOARD_PASSWORD_ENV)
    if bool(user) != bool(password):
        raise QueuerError(f"basic auth needs both {DASHBOARD_USER_ENV} and {DASHBOARD_PASSWORD_ENV}")
    key = os.environ.get("QUEUER_ENCRYPTION_KEY") or None
    if args.decrypt and key is None:
        raise QueuerError("--decrypt needs the key in QUEUER_ENCRYPTION_KEY")
    client = Client(_config(args), key, pool_size=2, install=False)
    app = create_app(
        client,
        read_only=args.read_only,
        basic_auth=(user, password) if user and password else None,
        token=os.environ.get(DASHBOARD_TOKEN_ENV) or None,
        encryption_key=key if args.decrypt else None,
        metrics=not args.no_metrics,
    )
    where = f"http://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}/"
    print(f"queuer dashboard on {where} ({'read-only' if args.read_only else 'actions on'})", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level.lower(), access_log=False)
    finally:
        client.close()
    return 0


# -- parser -----------------------------------------------------------------------------------------
def _rid(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UUID: {text!r}") from None


def _add_global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """--dsn, --schema and --json, accepted before the subcommand and after it (where they are
    suppressed unless given, so they never overwrite what was given before it)."""
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--dsn", default=default, help="postgresql:// URL (default: QUEUER_DB_URL or QUEUER_DB_*)"
    )
    parser.add_argument(
        "--schema", default=default, help="schema of the queuer tables (default: QUEUER_DB_SCHEMA or public)"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="machine-readable output",
    )


def version() -> str:
    from queuer import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _add_global_options(common, suppress=True)
    parser = argparse.ArgumentParser(
        prog="queuer", description="A PostgreSQL job queue shared with Go workers."
    )
    parser.add_argument("--version", action="version", version=f"queuer {version()}")
    _add_global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("worker", parents=[common], help="run the Queuer defined in MODULE:ATTR")
    p.add_argument("target", help="module:attribute of a Queuer (or of a function returning one)")
    p.add_argument("--concurrency", type=int, help="override max_concurrency")
    p.add_argument("--name", help="override the worker name")
    p.add_argument(
        "--no-master",
        action="store_true",
        help="do not take part in the master election (default: take part)",
    )
    p.add_argument(
        "--master", action="store_true", help=argparse.SUPPRESS
    )  # the default now; kept for scripts
    p.add_argument("--queues", help="queues to consume, in order of precedence (default: every queue)")
    p.add_argument("--include", help="modules or packages to import before starting (comma-separated)")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port (/metrics)")
    p.add_argument("--metrics-host", default="127.0.0.1", help="the address of the metrics port")
    p.add_argument("--grace", type=float, default=30.0, help="seconds running jobs get at stop")
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(func=cmd_worker)

    sub.add_parser("init", parents=[common], help="install or update the schema").set_defaults(func=cmd_init)

    p = sub.add_parser("list", parents=[common], help="list jobs, archive, workers or connections")
    p.add_argument("what", choices=("jobs", "archive", "workers", "connections"))
    statuses = list(dict.fromkeys([*(s.value for s in JobStatus), *(s.value for s in WorkerStatus)]))
    p.add_argument(
        "--status",
        type=str.upper,
        choices=statuses,
        metavar="STATUS",
        help="jobs: "
        + ", ".join(s.value for s in JobStatus)
        + "; workers: "
        + ", ".join(s.value for s in WorkerStatus),
    )
    p.add_argument("--task")
    p.add_argument("--search", help="substring of rid, task, status (workers: name, tasks, status)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--last-id", type=int, default=0, help="id of the last row of the previous page")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "get", parents=[common], help="show one job (queued, running or archived), archived job or worker"
    )
    p.add_argument("what", choices=("job", "archive", "worker"))
    p.add_argument("rid", type=_rid)
    p.set_defaults(func=cmd_get)

    p = sub.add_parser("cancel", parents=[common], help="cancel a queued, scheduled or running job")
    p.add_argument("what", choices=("job",))
    p.add_argument("rid", type=_rid)
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("stop", parents=[common], help="ask a worker (Python or Go) to stop")
    p.add_argument("what", choices=("worker",))
    p.add_argument("rid", type=_rid)
    p.add_argument("--graceful", action="store_true", help="finish running jobs first (STOPPING)")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("queue", parents=[common], help="list queues; pause, resume or limit one")
    p.add_argument("action", choices=("list", "pause", "resume", "limit"))
    p.add_argument("name", nargs="?", help="the queue (pause, resume, limit)")
    p.add_argument("--concurrency", type=int, help="limit: at most this many RUNNING at once (fleet-wide)")
    p.add_argument("--rate", type=int, help="limit: at most this many starts per --per seconds")
    p.add_argument("--per", type=float, default=1.0, help="limit: the rate's period in seconds (default 1)")
    p.set_defaults(func=cmd_queue)

    p = sub.add_parser("workflow", parents=[common], help="show a chain or group and its members")
    p.add_argument("action", choices=("show",))
    p.add_argument("rid", type=_rid)
    p.set_defaults(func=cmd_workflow)

    p = sub.add_parser("periodic", parents=[common], help="list the periodic tasks declared in code")
    p.add_argument("action", choices=("list",))
    p.set_defaults(func=cmd_periodic)

    p = sub.add_parser("readd", parents=[common], help="enqueue an archived job again (new rid)")
    p.add_argument("rid", type=_rid)
    p.set_defaults(func=cmd_readd)

    p = sub.add_parser("dashboard", parents=[common], help="serve the web dashboard (and /metrics)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--read-only", action="store_true", help="show everything, allow no action")
    p.add_argument(
        "--decrypt",
        action="store_true",
        help="show encrypted parameters and results when asked (key: QUEUER_ENCRYPTION_KEY)",
    )
    p.add_argument("--no-metrics", action="store_true", help="do not serve /metrics")
    p.add_argument("--log-level", default="WARNING")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("stats", parents=[common], help="counts, throughput, oldest queued job")
    p.add_argument("--watch", action="store_true", help="refresh until interrupted")
    p.add_argument("--interval", type=float, default=2.0)
    p.set_defaults(func=cmd_stats)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # Output piped into `head` and the reader left: not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(getattr(args, "log_level", "WARNING")).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except (JobNotFoundError, WorkerNotFoundError) as exc:
        print(f"queuer: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except SchemaMissingError as exc:
        print(f"queuer: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"queuer: cannot reach the database: {first}", file=sys.stderr)
        return EXIT_ERROR
    except (QueuerError, psycopg.Error) as exc:
        print(f"queuer: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())

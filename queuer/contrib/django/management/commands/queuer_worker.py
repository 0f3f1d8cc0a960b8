"""``manage.py queuer_worker``: run the tasks of Django's task framework that use queuer's
backend, until SIGTERM or SIGINT (then a graceful stop)."""

from __future__ import annotations

import inspect
import signal
import sys
import threading
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections
from django.utils.module_loading import autodiscover_modules

from queuer.contrib.django.backend import QueuerBackend
from queuer.contrib.django.tasks_api import Task, task_backends
from queuer.core import Queuer


def _runner(task: Any) -> Any:
    """The function queuer runs for a Django task: database connections tidied around it."""
    if inspect.iscoroutinefunction(task.func):

        async def run_async(*args: Any, **kwargs: Any) -> Any:
            return await task.acall(*args, **kwargs)

        return run_async

    def run(*args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        try:
            return task.call(*args, **kwargs)
        finally:
            close_old_connections()

    return run


def discovered_tasks() -> list[Any]:
    """The tasks of every app's ``tasks`` module that use a queuer backend."""
    autodiscover_modules("tasks")
    found: dict[str, Any] = {}
    for app in apps.get_app_configs():
        module = sys.modules.get(f"{app.name}.tasks")
        for value in vars(module).values() if module is not None else ():
            if issubclass(type(value), Task) and isinstance(task_backends[value.backend], QueuerBackend):
                found[value.module_path] = value
    return list(found.values())


class Command(BaseCommand):
    help = "Run a queuer worker for the tasks of Django's task framework that use queuer's backend."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--concurrency", type=int, default=4)
        parser.add_argument("--name", default="django")
        parser.add_argument("--queues", help="comma-separated, in order of precedence (default: every queue)")
        parser.add_argument("--backend", default="default", help="the TASKS alias (default: default)")
        parser.add_argument("--grace", type=float, default=30.0)

    def handle(self, *args: Any, **options: Any) -> None:
        backend = task_backends[options["backend"]]
        if not isinstance(backend, QueuerBackend):
            raise SystemExit(f"TASKS[{options['backend']!r}] is not queuer.contrib.django.QueuerBackend")
        queues = options["queues"].split(",") if options["queues"] else None
        worker = Queuer(
            options["name"], options["concurrency"], db_config=backend.configuration(), queues=queues
        )
        tasks = discovered_tasks()
        for task in tasks:
            worker.add_task_with_name(_runner(task), task.module_path)
        stopping = threading.Event()

        def on_signal(signum: int, _: Any) -> None:
            stopping.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        worker.start()
        self.stdout.write(
            f"queuer worker {worker.worker.rid} running {', '.join(t.module_path for t in tasks) or '-'}"
        )
        self.stdout.flush()
        stopping.wait()
        worker.stop(grace_seconds=options["grace"])

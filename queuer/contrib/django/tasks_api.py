"""Django's task framework: ``django.tasks`` (Django 6) or its backport ``django_tasks`` (the
same API for Django 4.2 to 5.2, and for Python 3.11, which Django 6 does not support)."""

from __future__ import annotations

try:
    from django.tasks import TaskResultStatus, task_backends  # type: ignore[import-not-found,unused-ignore]
    from django.tasks.backends.base import BaseTaskBackend  # type: ignore[import-not-found,unused-ignore]
    from django.tasks.base import Task, TaskError, TaskResult  # type: ignore[import-not-found,unused-ignore]
    from django.tasks.exceptions import InvalidTask as InvalidTaskError  # type: ignore[import-not-found,unused-ignore]
    from django.tasks.exceptions import TaskResultDoesNotExist  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    from django_tasks import TaskResultStatus, task_backends  # type: ignore[no-redef,unused-ignore]
    from django_tasks.backends.base import BaseTaskBackend  # type: ignore[no-redef,unused-ignore]
    from django_tasks.base import Task, TaskError, TaskResult  # type: ignore[no-redef,unused-ignore]
    from django_tasks.exceptions import (  # type: ignore[no-redef,unused-ignore]
        InvalidTaskError,
        TaskResultDoesNotExist,
    )

__all__ = [
    "BaseTaskBackend",
    "InvalidTaskError",
    "Task",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "task_backends",
]

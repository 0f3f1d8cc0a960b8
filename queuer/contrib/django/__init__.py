"""Django integration: a backend for Django's task framework that enqueues into queuer, and the
``manage.py queuer_worker`` command (add ``queuer.contrib.django`` to ``INSTALLED_APPS``).

    TASKS = {"default": {"BACKEND": "queuer.contrib.django.QueuerBackend"}}
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "QueuerBackend":  # imported on use: Django's settings must be configured first
        from .backend import QueuerBackend

        return QueuerBackend
    raise AttributeError(name)

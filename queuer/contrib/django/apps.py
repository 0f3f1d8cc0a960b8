"""The Django app that provides ``manage.py queuer_worker``."""

from __future__ import annotations

from django.apps import AppConfig


class QueuerConfig(AppConfig):
    name = "queuer.contrib.django"
    label = "queuer"
    verbose_name = "queuer"

"""Registers ``discovered_double`` on the worker of ``tests.discovery_app`` when imported."""

from tests.discovery_app import q


@q.task
def discovered_double(n: int) -> int:
    return 2 * n

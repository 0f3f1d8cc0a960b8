"""Task discovery: import every module of the packages a worker names, once, so that tasks
registered by decorators at import time exist before the worker starts claiming."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable

from queuer.model import QueuerError, ValidationError


def check_includes(names: Iterable[str] | str | None) -> list[str]:
    """Module or package names (a comma-separated string is read as a list)."""
    if names is None:
        return []
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    listed = list(names)
    for name in listed:
        if not isinstance(name, str) or not name or not all(p.isidentifier() for p in name.split(".")):
            raise ValidationError(f"include takes module names like 'myapp.tasks', got {name!r}")
    return listed


def import_all(names: Iterable[str]) -> list[str]:
    """Import each module, and every module below each package; the names imported, in order.
    A module that fails to import raises ``QueuerError`` naming it."""
    imported: list[str] = []
    for name in names:
        module = _load(name)
        imported.append(name)
        path = getattr(module, "__path__", None)
        if path is None:
            continue
        for info in pkgutil.walk_packages(path, prefix=f"{name}."):
            _load(info.name)
            imported.append(info.name)
    return imported


def _load(name: str) -> object:
    try:
        return importlib.import_module(name)
    except Exception as exc:
        raise QueuerError(f"include: importing {name!r} failed: {type(exc).__name__}: {exc}") from exc

"""Task registration: names, lookup, and coercion of JSON arguments to the task's annotations."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from queuer.model import DuplicateTaskError, ValidationError, validate_name
from queuer.model.jsoncodec import rfc3339_to_time


def derive_name(fn: Callable[..., Any]) -> str:
    """The name a callable is registered under by default: its ``__name__`` (e.g. ``send_email``).

    Deterministic across processes and independent of how the module was imported (a script run as
    ``__main__`` and the same module imported elsewhere agree). Lambdas need an explicit name.
    """
    name = getattr(fn, "__name__", None)
    if not isinstance(name, str) or name == "<lambda>":
        raise ValidationError(f"{fn!r} has no usable __name__; register it with add_task_with_name")
    return validate_name("task", name)


def _convert(value: Any, annotation: Any) -> Any:
    """Best-effort conversion of one decoded JSON value to an annotated type (Go ints arrive as 3)."""
    if annotation is inspect.Parameter.empty or value is None:
        return value
    try:
        if annotation is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if annotation is int and isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
        if annotation is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if annotation is datetime and isinstance(value, str):
            return rfc3339_to_time(value)
        if annotation is UUID and isinstance(value, str):
            return UUID(value)
        if annotation is Decimal and isinstance(value, int | float | str):
            return Decimal(str(value))
    except (ValueError, ArithmeticError):
        return value
    return value


@dataclass
class Task:
    """A registered task; ``is_async`` tasks run on the loop, others in a thread of their own."""

    name: str
    fn: Callable[..., Any]
    is_async: bool
    in_process: bool = False
    positional: list[Any] = field(default_factory=list)
    keyed: dict[str, Any] = field(default_factory=dict)
    var_positional: Any = inspect.Parameter.empty

    @classmethod
    def create(cls, name: str, fn: Callable[..., Any], in_process: bool = False) -> Task:
        if not callable(fn):
            raise ValidationError(f"task {name!r} is not callable")
        is_async = inspect.iscoroutinefunction(fn)
        if in_process and is_async:
            raise ValidationError(f"task {name!r}: async tasks run on the event loop, not in a process")
        task = cls(name=name, fn=fn, is_async=is_async, in_process=in_process)
        try:
            signature = inspect.signature(fn)
            hints = typing.get_type_hints(fn)
        except (TypeError, ValueError, NameError):
            return task
        for param in signature.parameters.values():
            annotation = hints.get(param.name, inspect.Parameter.empty)
            if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
                task.positional.append(annotation)
            if param.kind is param.VAR_POSITIONAL:
                task.var_positional = annotation
            if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
                task.keyed[param.name] = annotation
        return task

    def coerce(self, args: list[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Arguments converted by annotation, so a task gets what it declared whoever enqueued it."""
        out = []
        for i, value in enumerate(args):
            annotation = self.positional[i] if i < len(self.positional) else self.var_positional
            out.append(_convert(value, annotation))
        keyed = {k: _convert(v, self.keyed.get(k, inspect.Parameter.empty)) for k, v in kwargs.items()}
        return out, keyed


class TaskRegistry:
    """The tasks and next-interval functions one Queuer can run, by name."""

    def __init__(self) -> None:
        self.tasks: dict[str, Task] = {}
        self.next_intervals: dict[str, Callable[[datetime, int], datetime]] = {}
        self._names_by_fn: dict[int, str] = {}

    def add(self, fn: Callable[..., Any], name: str | None = None, in_process: bool = False) -> Task:
        name = derive_name(fn) if name is None else validate_name("task", name)
        if name in self.tasks:
            raise DuplicateTaskError(f"a task named {name!r} is already registered")
        task = Task.create(name, fn, in_process)
        self.tasks[name] = task
        self._names_by_fn[id(fn)] = name
        return task

    def add_next_interval(self, fn: Callable[[datetime, int], datetime], name: str | None = None) -> str:
        name = derive_name(fn) if name is None else validate_name("next_interval", name)
        if name in self.next_intervals:
            raise DuplicateTaskError(f"a next-interval function named {name!r} is already registered")
        if not callable(fn):
            raise ValidationError(f"next-interval function {name!r} is not callable")
        self.next_intervals[name] = fn
        return name

    def name_of(self, task: str | Callable[..., Any]) -> str:
        """The task name for a name or a callable (registered here or not)."""
        if isinstance(task, str):
            return validate_name("task", task)
        if not callable(task):
            raise ValidationError(f"task must be a name or a callable, got {type(task).__name__}")
        return self._names_by_fn.get(id(task)) or derive_name(task)

"""Task registration: names, lookup, and coercion of JSON arguments to the task's annotations."""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Generic, ParamSpec, TypeVar
from uuid import UUID

from queuer.model import DuplicateTaskError, ValidationError, validate_name
from queuer.model.jsoncodec import rfc3339_to_time

P = ParamSpec("P")
R = TypeVar("R")
TaskRef = str | Callable[..., Any]  # a task as its registered name or the function itself


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
        if annotation is date and isinstance(value, str):
            return date.fromisoformat(value)
        if annotation is UUID and isinstance(value, str):
            return UUID(value)
        if annotation is Decimal and isinstance(value, int | float | str):
            return Decimal(str(value))
    except (ValueError, ArithmeticError):
        return value
    return value


@dataclass(eq=False)
class Task(Generic[P, R]):
    """A registered task: what ``add_task`` returns. Calling it calls the function, so a decorated
    function keeps working as before; ``is_async`` tasks run on the loop, others in a thread."""

    name: str
    fn: Callable[P, R]
    is_async: bool
    in_process: bool = False
    positional: list[Any] = field(default_factory=list)
    keyed: dict[str, Any] = field(default_factory=dict)
    var_positional: Any = inspect.Parameter.empty
    signature: inspect.Signature | None = None
    # Positional counts a call without keywords may have (checked without binding, see check_call).
    min_positional: int = 0
    max_positional: float = math.inf

    def __post_init__(self) -> None:
        for attr in ("__module__", "__qualname__", "__doc__"):
            if hasattr(self.fn, attr):
                object.__setattr__(self, attr, getattr(self.fn, attr))
        self.__name__ = getattr(self.fn, "__name__", self.name)
        self.__wrapped__ = self.fn

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    @property
    def task(self) -> Callable[P, R]:
        """queuerPy's name for ``fn``."""
        return self.fn

    @classmethod
    def create(cls, name: str, fn: Callable[P, R], in_process: bool = False) -> Task[P, R]:
        if not callable(fn):
            raise ValidationError(f"task {name!r} is not callable")
        is_async = inspect.iscoroutinefunction(fn)
        if in_process and is_async:
            raise ValidationError(f"task {name!r}: async tasks run on the event loop, not in a process")
        task = cls(name=name, fn=fn, is_async=is_async, in_process=in_process)
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            return task
        task.signature = signature
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # an annotation that does not resolve only costs us the conversion
            hints = {}
        required_keyword = False
        task.max_positional = 0
        for param in signature.parameters.values():
            annotation = hints.get(param.name, inspect.Parameter.empty)
            required = param.default is inspect.Parameter.empty
            if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
                task.positional.append(annotation)
                task.max_positional += 1
                task.min_positional += required
            if param.kind is param.VAR_POSITIONAL:
                task.var_positional = annotation
                task.max_positional = math.inf
            if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
                task.keyed[param.name] = annotation
            required_keyword |= param.kind is param.KEYWORD_ONLY and required
        if required_keyword:  # no call without keywords fits: always bind
            task.max_positional = -1
        return task

    def check_call(self, args: typing.Sequence[Any], kwargs: dict[str, Any]) -> None:
        """Raise ``ValidationError`` when the function could not be called with these arguments,
        at enqueue instead of at run time. The common call (positional arguments within the
        function's bounds) is checked by counting; others are bound against the signature."""
        if self.signature is None or (not kwargs and self.min_positional <= len(args) <= self.max_positional):
            return
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ValidationError(
                f"task {self.name!r} cannot be called with these arguments: {exc}"
            ) from None

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
        self.tasks: dict[str, Task[..., Any]] = {}
        self.next_intervals: dict[str, Callable[[datetime, int], datetime]] = {}
        self._names_by_fn: dict[int, str] = {}

    def add(self, fn: Callable[P, R], name: str | None = None, in_process: bool = False) -> Task[P, R]:
        if isinstance(fn, Task):
            fn = fn.fn
        name = derive_name(fn) if name is None else validate_name("task", name)
        if name in self.tasks:
            raise DuplicateTaskError(f"Task already exists: a task named {name!r} is already registered")
        task = Task.create(name, fn, in_process)
        self.tasks[name] = task
        self._names_by_fn[id(fn)] = name
        return task

    def add_next_interval(self, fn: Callable[[datetime, int], datetime], name: str | None = None) -> str:
        named = name is not None
        name = derive_name(fn) if name is None else validate_name("next_interval", name)
        if name in self.next_intervals:
            what = "NextIntervalFunc with name already exists" if named else "NextIntervalFunc already exists"
            raise DuplicateTaskError(f"{what}: a next-interval function named {name!r} is already registered")
        if not callable(fn):
            raise ValidationError(f"next-interval function {name!r} is not callable")
        self.next_intervals[name] = fn
        return name

    def registered_name(self, fn: Callable[..., Any]) -> str | None:
        """The name ``fn`` is registered under here, if it is."""
        if isinstance(fn, Task):
            return fn.name if fn.name in self.tasks else None
        return self._names_by_fn.get(id(fn))

    def name_of(self, task: str | Callable[..., Any]) -> str:
        """The task name for a name or a callable (registered here or not)."""
        if isinstance(task, str):
            return validate_name("task", task)
        if isinstance(task, Task):
            return task.name
        if not callable(task):
            raise ValidationError(f"task must be a name or a callable, got {type(task).__name__}")
        return self._names_by_fn.get(id(task)) or derive_name(task)


def new_task(fn: Callable[P, R]) -> Task[P, R]:
    """An unregistered ``Task`` named after ``fn`` (queuerPy's factory; ``add_task`` registers)."""
    return Task.create(derive_name(fn), fn)


def new_task_with_name(fn: Callable[P, R], name: str) -> Task[P, R]:
    """An unregistered ``Task`` with an explicit name."""
    return Task.create(validate_name("task", name), fn)

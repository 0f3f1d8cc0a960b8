"""The one mechanism that gives every ``*_async`` method of the API its blocking twin.

Each operation is written once, as a coroutine method that runs on the owner's event loop; its
blocking form runs that same coroutine there while the calling thread waits, with the same typed
signature (``get_job = blocking(get_job_async)``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from .loop import LoopThread

P = ParamSpec("P")
T = TypeVar("T")


class OwnsLoop(Protocol):
    _loop: LoopThread


S = TypeVar("S", bound=OwnsLoop)


def blocking(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[S, P], T]:
    """The blocking twin of ``method``: its coroutine run on the owner's loop, the caller waiting.

    Called from the owner's own loop thread it raises ``QueuerStateError`` (it would deadlock)."""

    def twin(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._loop.call(method(self, *args, **kwargs))

    twin.__name__ = method.__name__.removesuffix("_async")
    twin.__qualname__ = method.__qualname__.removesuffix("_async")
    twin.__module__ = method.__module__
    twin.__doc__ = method.__doc__
    return twin

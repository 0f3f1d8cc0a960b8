"""The web dashboard (``pip install "queuer[dashboard]"``): ``queuer dashboard``, or
``create_app()`` mounted in an ASGI application. See the dashboard guide."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from queuer.model import QueuerError

if TYPE_CHECKING:
    from .app import close, create_app


def __getattr__(name: str) -> Any:
    if name not in ("create_app", "close"):
        raise AttributeError(f"module 'queuer.dashboard' has no attribute {name!r}")
    try:
        from . import app
    except ImportError as exc:  # the extra is not installed
        raise QueuerError(f'the dashboard needs its extra: pip install "queuer[dashboard]" ({exc})') from exc
    return getattr(app, name)


__all__ = ["close", "create_app"]

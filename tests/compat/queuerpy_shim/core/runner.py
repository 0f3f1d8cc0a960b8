"""queuerPy's ``go_func``: run a function in a thread and collect its result later."""

from __future__ import annotations

import threading
from typing import Any


class SmallRunner:
    def __init__(self, func: Any, *args: Any, **kwargs: Any) -> None:
        self._result: Any = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._result = func(*args, **kwargs)
            except BaseException as exc:
                self._error = exc

        self._thread = threading.Thread(target=run, daemon=True)

    def go(self) -> None:
        self._thread.start()

    def get_results(self, timeout: float | None = None) -> Any:
        self._thread.join(timeout)
        if self._error is not None:
            raise self._error
        return self._result


def go_func(func: Any, use_mp: bool = True, *args: Any, pool: Any = None, **kwargs: Any) -> SmallRunner:
    runner = SmallRunner(func, *args, **kwargs)
    runner.go()
    return runner

"""The background event loop of one Queuer, and the two ways to call into it (sync and async)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from queuer.model import QueuerStateError

T = TypeVar("T")


def reraise_if_cancelled() -> None:
    """In a handler of a driver error: re-raise the cancellation the error stands for. psycopg
    turns a cancelled statement into an error (the server's "canceling statement"), and a loop
    that retries on driver errors would otherwise outlive its own cancellation."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class LoopThread:
    """An asyncio loop running forever in a daemon thread; every database call of a Queuer runs here."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def refuse_blocking(self) -> None:
        """Blocking I/O on the loop's own thread would stall every job: refuse it."""
        if self.in_loop_thread():
            raise QueuerStateError(
                "a blocking queuer method was called on the queuer's own event loop (from an async "
                "task); use its *_async twin instead"
            )

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and block the calling thread until it is done."""
        if self.in_loop_thread():
            coro.close()
            self.refuse_blocking()
        if self.loop.is_closed() or not self._thread.is_alive():
            coro.close()
            raise QueuerStateError("this queuer has been stopped")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def call_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` from any event loop without blocking it."""
        if self.loop.is_closed():
            coro.close()
            raise QueuerStateError("this queuer has been stopped")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if not self.in_loop_thread():
            self._thread.join(timeout=10)
            self.loop.close()

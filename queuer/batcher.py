"""Commit sharing for single enqueues: ``add_job`` calls that arrive while another's insert is in
flight wait for it and then go together, as one INSERT and one commit (so one fsync) for all of
them. A call that finds nothing in flight is sent at once, so a lone caller waits no longer than
before; many concurrent callers (a web app's requests) share commits instead of queueing for them.
Every call still returns only after its own job is committed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import psycopg

from queuer.database import NewJob
from queuer.database.connect_errors import connection_lost
from queuer.model import Job

log = logging.getLogger("queuer.enqueue")

MAX_BATCH = 500  # jobs in one shared insert
WRITERS = 2  # inserts in flight at once (each on its own pooled connection)

Write = Callable[[list[NewJob]], Awaitable[list[Job]]]
Again = Callable[[NewJob], Awaitable[Job]]


class InsertBatcher:
    """Runs on the client's loop."""

    def __init__(self, write: Write, again: Again) -> None:
        self._write = write
        self._again = again
        self._pending: list[tuple[NewJob, asyncio.Future[Job]]] = []
        self._writers = 0
        self._alone: dict[asyncio.Future[Job], asyncio.Task[None]] = {}  # jobs sent alone, by whom

    async def submit(self, new: NewJob) -> Job:
        """The job once committed. Cancelled before it is sent, it is not sent; cancelled while
        it is sent alone, its statement is cancelled in the server (as a plain insert's would
        be); sent with others, it is written with them."""
        future: asyncio.Future[Job] = asyncio.get_running_loop().create_future()
        entry = (new, future)
        self._pending.append(entry)
        self._start_writer()
        try:
            return await future
        except asyncio.CancelledError:
            if entry in self._pending:
                self._pending.remove(entry)
            else:
                writer = self._alone.get(future)
                if writer is not None:
                    writer.cancel()
            raise

    def _start_writer(self) -> None:
        if self._pending and self._writers < WRITERS:
            self._writers += 1
            asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                task = asyncio.current_task()
                if len(batch) == 1 and task is not None:
                    self._alone[batch[0][1]] = task
                try:
                    await self._send(batch)
                finally:
                    self._alone.pop(batch[0][1], None)
        finally:
            self._writers -= 1
            # Jobs that came while this writer was cancelled get a writer of their own.
            asyncio.get_running_loop().call_soon(self._start_writer)

    async def _send(self, batch: list[tuple[NewJob, asyncio.Future[Job]]]) -> None:
        try:
            written = {job.rid: job for job in await self._write([new for new, _ in batch])}
        except psycopg.DatabaseError as exc:
            if not connection_lost(exc):
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            # The commit may or may not have happened: each job is sent again on its own, and
            # found instead of written twice if it did (the rids are ours).
            log.warning("add_job: connection lost (%s); sending %d job(s) again", exc, len(batch))
            for new, future in batch:
                try:
                    job = await self._again(new)
                except Exception as again_exc:  # delivered to its caller
                    if not future.done():
                        future.set_exception(again_exc)
                else:
                    if not future.done():
                        future.set_result(job)
            return
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
            if not isinstance(exc, Exception):
                raise
            return
        for new, future in batch:
            if not future.done():
                future.set_result(written[new.rid])

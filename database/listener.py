"""The dedicated LISTEN connection: channels ``job`` and ``job_archive`` (docs/go-interop.md §2).

It reconnects with backoff when the connection dies, notices a silently dead connection with TCP
keepalives and a periodic ``SELECT 1``, and reports every (re)connect so the caller can claim at once
and re-check what it waits for (notifications sent while disconnected are gone). The caller may
narrow the channels while it needs fewer wake-ups (a saturated worker drops ``job``); a channel
added back is reported like a reconnect, since what was sent meanwhile was not heard.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from uuid import UUID

import psycopg
from psycopg.pq import ConnStatus
from psycopg.pq.abc import PGconn

from queuer.model import JobEvent, JobStatus

from .config import DatabaseConfiguration

log = logging.getLogger("queuer.listener")

CHANNELS = ("job", "job_archive")


def parse_payload(channel: str, payload: str) -> JobEvent | None:
    """Decode the trigger's JSON (any spacing or key order; unknown keys ignored). Only ``status``
    is required: a bare ``{"status": "QUEUED"}`` wakes workers, as it does Go's (contract §2.3)."""
    try:
        data = json.loads(payload)
        rid = data.get("rid")
        return JobEvent(
            id=int(data.get("id") or 0),
            rid=UUID(str(rid)) if rid else None,
            status=JobStatus(data["status"]),
            channel=channel,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        log.debug("ignoring undecodable notification on %s: %r", channel, payload)
        return None


class Listener:
    """Runs until cancelled; calls ``on_notify(channel, payload)`` per notification (the caller
    decides whether to decode it) and ``on_connect`` per (re)connect."""

    def __init__(
        self,
        config: DatabaseConfiguration,
        on_notify: Callable[[str, str], None],
        on_connect: Callable[[], Awaitable[None]],
        check_interval: float = 30.0,
    ) -> None:
        self._config = config
        self._on_notify = on_notify
        self._on_connect = on_connect
        self._check_interval = check_interval
        self.connected = asyncio.Event()
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._wanted: frozenset[str] = frozenset(CHANNELS)
        self.channels: frozenset[str] = frozenset()  # what the connection listens to now
        self._changed = asyncio.Event()  # a change was asked for since the last _subscribe began

    def set_channels(self, channels: frozenset[str]) -> None:
        """Listen to these channels from now on (applied by the listener's own task, soon). Not
        compared with ``channels`` here: while the task runs a change, they are about to differ."""
        if channels != self._wanted:
            self._wanted = channels
            self._changed.set()

    async def _connect(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        conninfo = self._config.listen_dsn or self._config.conninfo()
        conn = await psycopg.AsyncConnection.connect(
            conninfo,
            autocommit=True,
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
            **self._config.connect_kwargs(),
        )
        self.channels = frozenset()
        await self._subscribe(conn)
        return conn

    async def _subscribe(self, conn: psycopg.AsyncConnection[tuple[object, ...]]) -> frozenset[str]:
        """LISTEN/UNLISTEN so the connection listens to the wanted channels; the added ones. A
        change asked for meanwhile sets ``_changed`` again and is applied by the next call."""
        self._changed.clear()
        wanted = self._wanted
        added, removed = wanted - self.channels, self.channels - wanted
        statements = [f"LISTEN {c}" for c in sorted(added)] + [f"UNLISTEN {c}" for c in sorted(removed)]
        if statements:
            await conn.execute("; ".join(statements))
        self.channels = wanted
        return added

    async def run(self) -> None:
        delay = 0.1
        while True:
            try:
                self._conn = await self._connect()
            except (psycopg.OperationalError, OSError) as exc:
                log.warning("listener cannot connect (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            delay = 0.1
            self.connected.set()
            try:
                await self._on_connect()
                await self._consume(self._conn)
            except (psycopg.OperationalError, OSError) as exc:
                log.warning("listener connection lost (%s); reconnecting", exc)
            finally:
                self.connected.clear()
                conn, self._conn = self._conn, None
                if conn is not None:
                    await _close_quietly(conn)

    async def _consume(self, conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        """Read notifications straight off libpq in the socket's readiness callback: no task wake-up,
        per-notification object or generator step. At thousands of jobs a second each job brings
        three notifications (queued, running, archived); psycopg's ``notifies()`` spent about a
        tenth of a busy worker's time on them. Returns only by raising (connection lost)."""
        pgconn = conn.pgconn
        fd = pgconn.socket
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[None] = loop.create_future()
        last_read = loop.time()

        def readable() -> None:
            nonlocal last_read
            last_read = loop.time()
            try:
                self._read(pgconn)
            except (psycopg.OperationalError, OSError) as exc:
                loop.remove_reader(fd)
                if not lost.done():
                    lost.set_exception(exc)

        # Notifications that arrive while psycopg itself reads the socket (the liveness query).
        conn.add_notify_handler(lambda n: self._on_notify(n.channel, n.payload))
        loop.add_reader(fd, readable)
        try:
            while True:
                changed = loop.create_task(self._changed.wait())
                try:
                    await asyncio.wait(
                        (lost, changed), timeout=self._check_interval, return_when="FIRST_COMPLETED"
                    )
                finally:
                    changed.cancel()
                if lost.done():
                    lost.result()  # raises the connection's error
                if self._changed.is_set():
                    # psycopg reads the socket itself while it runs the statements.
                    loop.remove_reader(fd)
                    added = await self._subscribe(conn)
                    loop.add_reader(fd, readable)
                    readable()  # anything psycopg read off the socket but left in libpq's buffer
                    if added:
                        await self._on_connect()  # what was sent on them meanwhile was not heard
                elif loop.time() - last_read >= self._check_interval:
                    # Quiet for a while: prove the connection is alive (psycopg reads meanwhile).
                    loop.remove_reader(fd)
                    await conn.execute("SELECT 1")
                    loop.add_reader(fd, readable)
                    readable()
        finally:
            loop.remove_reader(fd)

    def _read(self, pgconn: PGconn) -> None:
        pgconn.consume_input()  # OperationalError when the connection is gone
        if pgconn.status != ConnStatus.OK:
            raise psycopg.OperationalError("the LISTEN connection is closed")
        while (n := pgconn.notifies()) is not None:
            try:
                self._on_notify(n.relname.decode(), n.extra.decode())
            except Exception:  # one bad handler run must not drop the rest of the packet
                log.exception("handling a notification on %s failed", n.relname.decode())


async def _close_quietly(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
    try:
        await conn.close()
    except Exception:  # closing a broken connection must not hide the reason we close it
        log.debug("error closing listener connection", exc_info=True)

"""What one dashboard app holds: the client its actions go through, its reads, its live feed and
its access settings. Opened on the first request, on the web server's own event loop, so the
same app runs alone (``queuer dashboard``) or mounted in an application whose lifespan it never
sees."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from queuer.client import Client, connect
from queuer.database.encryption import PgpCodec

from .live import LiveFeed
from .reads import Reads
from .security import Access


@dataclass
class Settings:
    """How ``create_app`` was called."""

    access: Access
    encryption_key: str | None = None
    pool_size: int = 4


class Dashboard:
    def __init__(self, client: Client | None, settings: Settings) -> None:
        self.settings = settings
        self.access = settings.access
        self._client = client
        self._owns_client = client is None
        self._reads: Reads | None = None
        self._live: LiveFeed | None = None
        self._lock = asyncio.Lock()

    async def ready(self) -> None:
        if self._reads is not None:
            return
        async with self._lock:
            if self._reads is not None:
                return
            if self._client is None:
                # The dashboard never installs a schema (an operator's tool, as the CLI): it
                # refuses to start on a database without one.
                self._client = await asyncio.to_thread(connect, install=False, pool_size=2)
            key = self.settings.encryption_key
            reads = Reads(self._client.config, PgpCodec(key) if key else None, self.settings.pool_size)
            await reads.open()
            self._live = LiveFeed(self._client.config, reads.worker_digest)
            self._reads = reads

    @property
    def client(self) -> Client:
        assert self._client is not None, "the dashboard is not open yet"
        return self._client

    @property
    def reads(self) -> Reads:
        assert self._reads is not None, "the dashboard is not open yet"
        return self._reads

    @property
    def live(self) -> LiveFeed:
        assert self._live is not None, "the dashboard is not open yet"
        return self._live

    async def close(self) -> None:
        """Close what the dashboard opened (the client only when it made it)."""
        async with self._lock:
            if self._live is not None:
                await self._live.close()
                self._live = None
            if self._reads is not None:
                await self._reads.close()
                self._reads = None
            if self._owns_client and self._client is not None:
                await self._client.close_async()
                self._client = None

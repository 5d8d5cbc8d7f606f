"""What the tools share for the server's lifetime: settings, the upstream client, the jobs known here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from server.jobs import JobRegistry
from server.settings import Settings
from server.upstream import FalQueueClient, create_http_client
from server.waiting import Waiter


@dataclass
class Runtime:
    settings: Settings
    upstream: FalQueueClient
    jobs: JobRegistry
    waiter: Waiter


@asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """One pooled HTTP client for the whole lifetime, closed on the way out."""
    async with create_http_client(settings) as http:
        upstream = FalQueueClient(settings, http)
        # Streams hold a connection for a whole wait: keep at most half the pool for them, so polls always fit.
        waiter = Waiter(upstream, max_streams=min(settings.max_streams, settings.max_connections // 2))
        yield Runtime(settings=settings, upstream=upstream, jobs=JobRegistry(), waiter=waiter)

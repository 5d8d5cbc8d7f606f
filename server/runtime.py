"""What the tools share for the server's lifetime: settings, the upstream client, the ledger, the waiter."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import httpx

from server.jobs import JobRegistry
from server.ledger import Ledger
from server.settings import Settings
from server.upstream import FalQueueClient, create_http_client
from server.waiting import Waiter

T = TypeVar("T")
MEDIA_LIMITS = httpx.Limits(max_connections=4, max_keepalive_connections=2)


@dataclass
class Runtime:
    settings: Settings
    upstream: FalQueueClient
    jobs: JobRegistry
    waiter: Waiter
    ledger: Ledger
    # Media downloads get a client of their own: no auth headers or cookies shared with the upstream's, and a
    # long download never holds one of the upstream pool's connections.
    media_http: httpx.AsyncClient

    async def db(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a (short, blocking) ledger call in a worker thread, so the event loop never waits on SQLite."""
        return await anyio.to_thread.run_sync(functools.partial(call, *args, **kwargs))


def open_ledger(settings: Settings) -> Ledger:
    return Ledger(Ledger.default_path(settings.state_dir))


@asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """One pooled HTTP client and one ledger connection for the whole lifetime, closed on the way out."""
    ledger = open_ledger(settings)
    try:
        async with (
            create_http_client(settings) as http,
            httpx.AsyncClient(trust_env=False, follow_redirects=False, limits=MEDIA_LIMITS) as media_http,
        ):
            upstream = FalQueueClient(settings, http)
            # Streams hold a connection for a whole wait: keep at most half the pool for them, so polls always fit.
            waiter = Waiter(upstream, max_streams=min(settings.max_streams, settings.max_connections // 2))
            yield Runtime(
                settings=settings,
                upstream=upstream,
                jobs=JobRegistry(),
                waiter=waiter,
                ledger=ledger,
                media_http=media_http,
            )
    finally:
        ledger.close()

"""What the tools share for the server's lifetime: settings, the upstream client, the ledger, the waiter.

Everything heavy (httpx, SQLite, the status stream) is created on first use rather than at start-up: a client
waits for the first `tools/list` answer, which needs none of it.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from server.jobs import JobRegistry
from server.settings import Settings

if TYPE_CHECKING:
    import httpx

    from server.ledger import Ledger
    from server.upstream import FalQueueClient
    from server.waiting import Waiter

T = TypeVar("T")
MEDIA_MAX_CONNECTIONS = 4


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.jobs = JobRegistry()
        # Jobs a get_fal_result wait is following right now: the watcher leaves them alone (no double polling).
        self.waits: set[str] = set()
        self._ledger: Ledger | None = None
        self._upstream: FalQueueClient | None = None
        self._waiter: Waiter | None = None
        self._media_http: httpx.AsyncClient | None = None

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = open_ledger(self.settings)
        return self._ledger

    @property
    def upstream(self) -> FalQueueClient:
        if self._upstream is None:
            from server.upstream import FalQueueClient, create_http_client

            self._upstream = FalQueueClient(self.settings, create_http_client(self.settings))
        return self._upstream

    @property
    def waiter(self) -> Waiter:
        if self._waiter is None:
            from server.waiting import Waiter

            # Streams hold a connection for a whole wait: at most half the pool, so polls always fit.
            streams = min(self.settings.max_streams, self.settings.max_connections // 2)
            self._waiter = Waiter(self.upstream, max_streams=streams)
        return self._waiter

    @property
    def media_http(self) -> httpx.AsyncClient:
        """Media downloads get a client of their own: no auth headers or cookies shared with the upstream's,
        and a long download never holds one of the upstream pool's connections."""
        if self._media_http is None:
            import httpx

            limits = httpx.Limits(max_connections=MEDIA_MAX_CONNECTIONS, max_keepalive_connections=2)
            self._media_http = httpx.AsyncClient(trust_env=False, follow_redirects=False, limits=limits)
        return self._media_http

    async def db(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a (short, blocking) ledger call in a worker thread, so the event loop never waits on SQLite."""
        return await anyio.to_thread.run_sync(functools.partial(call, *args, **kwargs))

    async def aclose(self) -> None:
        if self._upstream is not None:
            await self._upstream.http.aclose()
        if self._media_http is not None:
            await self._media_http.aclose()
        if self._ledger is not None:
            self._ledger.close()


def open_ledger(settings: Settings) -> Ledger:
    from server.ledger import Ledger

    return Ledger(Ledger.default_path(settings.state_dir))


@asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    runtime = Runtime(settings)
    try:
        yield runtime
    finally:
        with anyio.CancelScope(shield=True):
            await runtime.aclose()

"""What one running server shares, below both the composition root and the tools: `Runtime` (settings, the
upstream client, the job lifecycle with its ledger, the waiter, fal storage, the media downloader) and how the
ledger backend is chosen.

Heavy services (httpx, SQLite, the status stream) are created on first use, since a client waits for the first
`tools/list` answer, which needs none of them. Free of MCP: the tools import this module, and the composition root
(`server.app`) builds the MCP face on top of it.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio

from server.errors import ConfigurationError
from server.jobs.keeping import Jobs
from server.settings import Settings, is_loopback_host

if TYPE_CHECKING:
    import httpx

    from server.files.downloads import DownloadLimits
    from server.files.url_safety import Resolver
    from server.jobs.ledger import JobLedger
    from server.jobs.waiting import Waiter
    from server.money.service import Money
    from server.upstream.routes import Upstream
    from server.upstream.storage import FalStorageClient

MEDIA_MAX_CONNECTIONS = 4


class Runtime:
    """The services one running server shares, wired from its settings."""

    def __init__(self, settings: Settings, *, resolve: Resolver | None = None, config_error: str | None = None) -> None:
        self.settings = settings
        # How media hosts' names become addresses: None for the system resolver; a test may map names itself.
        self.resolve = resolve
        # Set when the server started with a bad setting: every call answers with it (see `check_config`).
        self.config_error = config_error
        # This process's name among the instances sharing a ledger: its leases' owner, and sent upstream in the
        # User-Agent so a shared upstream (the sandbox) can tell instances apart. Random, so it reveals nothing.
        self.instance_id = secrets.token_hex(4)
        self.jobs = Jobs(
            lambda: open_ledger(settings, instance=self.instance_id),
            secrets=settings.secrets(),
            max_stored_result_bytes=settings.max_stored_result_bytes,
        )
        self._upstream: Upstream | None = None
        self._money: Money | None = None
        self._waiter: Waiter | None = None
        self._media_http: httpx.AsyncClient | None = None

    def check_config(self) -> None:
        """Refuse any work while the configuration is broken, saying what to fix."""
        if self.config_error is not None:
            raise ConfigurationError(self.config_error)

    @property
    def upstream(self) -> Upstream:
        """Every route family's adapter on one HTTP client (the fal queue, Kling, Luma), picked by model id."""
        if self._upstream is None:
            from server.upstream.client import create_http_client
            from server.upstream.routes import Upstream

            self._upstream = Upstream(self.settings, create_http_client(self.settings, self.instance_id))
        return self._upstream

    @property
    def money(self) -> Money:
        """Prices, estimates, caps, spend and balance; fal's pricing and the balance routes share the upstream's pool
        (each request carries its own key, to its own host)."""
        if self._money is None:
            from server.money.service import Money

            self._money = Money(self.settings, self.jobs, lambda: self.upstream.http)
        return self._money

    @property
    def waiter(self) -> Waiter:
        if self._waiter is None:
            from server.jobs.waiting import Waiter

            # Streams hold a connection for a whole wait: at most half the pool, so polls always fit.
            streams = min(self.settings.max_streams, self.settings.max_connections // 2)
            self._waiter = Waiter(self.upstream, max_streams=streams)
        return self._waiter

    def storage(self) -> FalStorageClient | None:
        """fal storage for uploads, or None without a fal key (a UniAPI token cannot upload)."""
        fal_key = self.settings.fal_api_key()
        if not fal_key:
            return None
        from server.upstream.storage import FalStorageClient

        return FalStorageClient(
            self.upstream.http,
            token_base=self.settings.storage_token_base,
            upload_base=self.settings.storage_upload_base,
            fal_key=fal_key,
            answer_timeout=self.settings.request_timeout,
        )

    @property
    def media_http(self) -> httpx.AsyncClient:
        """Media downloads get a client of their own: no auth headers or cookies shared with the upstream's,
        and a long download never holds one of the upstream pool's connections. No connection is kept alive:
        each download connects to the address it has just checked (the pool would key it by address alone,
        whatever the TLS name)."""
        if self._media_http is None:
            import httpx

            limits = httpx.Limits(max_connections=MEDIA_MAX_CONNECTIONS, max_keepalive_connections=0)
            self._media_http = httpx.AsyncClient(trust_env=False, follow_redirects=False, limits=limits)
        return self._media_http

    def download_limits(self) -> DownloadLimits:
        from server.files.downloads import DownloadLimits

        return DownloadLimits(
            max_bytes=self.settings.max_download_bytes,
            timeout_seconds=self.settings.download_timeout,
            # Only a loopback upstream (the sandbox) may hand out loopback media URLs.
            allow_loopback=is_loopback_host(urlsplit(self.settings.base_url).hostname or ""),
        )

    async def aclose(self) -> None:
        if self._upstream is not None:
            await self._upstream.http.aclose()
        if self._media_http is not None:
            await self._media_http.aclose()
        self.jobs.close()


def open_ledger(settings: Settings, *, instance: str | None = None) -> JobLedger:
    """The PostgreSQL ledger when FAL_MCP_DATABASE_URL is set (psycopg is imported only then), else SQLite."""
    from server.jobs.ledger import LedgerError, SqliteLedger

    secrets = settings.secrets()  # cut out of every text a ledger stores (an upstream may echo the key back)
    if settings.database_url is None:
        return SqliteLedger(SqliteLedger.default_path(settings.state_dir), instance=instance, secrets=secrets)
    try:
        from server.jobs.ledger.postgres import PostgresLedger
    except ImportError as exc:
        raise LedgerError(
            f"FAL_MCP_DATABASE_URL is set, but the PostgreSQL driver cannot be loaded ({exc}): install it with "
            'pip install "fal-queue-mcp[postgres]", or unset FAL_MCP_DATABASE_URL to use the SQLite ledger.'
        ) from None
    return PostgresLedger(
        settings.database_url.get_secret_value(),
        instance=instance,
        secrets=secrets,
        pool_size=settings.database_pool_size,
        connect_timeout=settings.connect_timeout,
    )


@asynccontextmanager
async def open_runtime(
    settings: Settings, *, resolve: Resolver | None = None, config_error: str | None = None
) -> AsyncIterator[Runtime]:
    runtime = Runtime(settings, resolve=resolve, config_error=config_error)
    try:
        yield runtime
    finally:
        with anyio.CancelScope(shield=True):
            await runtime.aclose()

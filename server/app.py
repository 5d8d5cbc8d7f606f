"""The composition root: settings in, a running MCP server out. Everything the tools share is built here.

`Runtime` holds the services of one running server (the upstream client, the job lifecycle, the waiter, fal
storage, the media downloader); heavy ones (httpx, SQLite, the status stream) are created on first use, since a
client waits for the first `tools/list` answer, which needs none of them. `create_server` assembles the MCP
face (tools, resources, prompts) and starts the watcher and the relay of other instances' job changes.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio
from mcp.server.mcpserver import MCPServer

from server import __version__
from server.errors import ConfigurationError
from server.jobs.keeping import Jobs
from server.settings import Settings, is_loopback_host

if TYPE_CHECKING:
    import httpx

    from server.fal.client import FalQueueClient
    from server.fal.storage import FalStorageClient
    from server.files.downloads import DownloadLimits
    from server.files.url_safety import Resolver
    from server.jobs.ledger import JobLedger
    from server.jobs.waiting import Waiter

log = logging.getLogger(__name__)
WATCH_START_DELAY_SECONDS = 1.0  # the watcher starts once the first requests are answered
MEDIA_MAX_CONNECTIONS = 4

INSTRUCTIONS = (
    "Generate videos and images with fal.ai models. submit_fal_job starts a job and returns a request_id at "
    "once; video jobs take 1-5 minutes. Then call get_fal_result with the request_id until done is true "
    "(get_fal_status shows queue position and logs). Results include media URLs to show the user."
)


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
        self._upstream: FalQueueClient | None = None
        self._waiter: Waiter | None = None
        self._media_http: httpx.AsyncClient | None = None

    def check_config(self) -> None:
        """Refuse any work while the configuration is broken, saying what to fix."""
        if self.config_error is not None:
            raise ConfigurationError(self.config_error)

    @property
    def upstream(self) -> FalQueueClient:
        if self._upstream is None:
            from server.fal.client import FalQueueClient, create_http_client

            self._upstream = FalQueueClient(self.settings, create_http_client(self.settings, self.instance_id))
        return self._upstream

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
        from server.fal.storage import FalStorageClient

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


def create_server(
    settings: Settings,
    *,
    resolve: Resolver | None = None,
    config_error: str | None = None,
    legacy_subscriptions: bool = True,
) -> MCPServer[Runtime]:
    """The MCP server. With `config_error` (a bad setting found at start-up) it still lists its tools, so the client
    connects, and every call answers with that error instead of a bare "connection closed". `resolve` replaces
    the system resolver for media downloads (tests map a name to 127.0.0.1 with it). `legacy_subscriptions`:
    serve 2025-11-25 `resources/subscribe`; only where the transport can push (not on stateless HTTP).
    2026-07-28 `subscriptions/listen` is served everywhere."""
    from tools import mcp_apps, mcp_completion, mcp_prompts, mcp_resources, mcp_tools, mcp_updates

    running: list[Runtime] = []
    updates = mcp_updates.JobUpdates(
        max_subscriptions=settings.max_subscriptions, max_subscription_bytes=settings.max_subscription_bytes
    )

    @asynccontextmanager
    async def lifespan(_: MCPServer[Runtime]) -> AsyncIterator[Runtime]:
        async with (
            open_runtime(settings, resolve=resolve, config_error=config_error) as runtime,
            anyio.create_task_group() as background,
        ):
            if config_error is None and settings.database_url is not None:
                # A shared database is opened before serving (an HTTP instance has no cold start to protect),
                # in a worker thread: connecting must not hold up the event loop.
                await anyio.to_thread.run_sync(lambda: runtime.jobs.ledger)
            if config_error is None:
                background.start_soon(_relay, runtime)
            if settings.watch_jobs and config_error is None:
                background.start_soon(_watch, runtime)
            background.start_soon(updates.run, runtime.jobs)
            running.append(runtime)
            try:
                yield runtime
            finally:
                running.remove(runtime)
                background.cancel_scope.cancel()

    def current() -> Runtime:
        if not running:
            raise RuntimeError("the server is not running")
        return running[-1]

    server: MCPServer[Runtime] = MCPServer(
        "fal-queue-mcp",
        title="fal queue",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        log_level=settings.log_level,
        tools=mcp_tools.build_tools(settings.max_wait_seconds),
        extensions=[mcp_apps.build_apps(settings)],
        subscriptions=updates.bus,
    )
    mcp_resources.register_resources(server, current)
    mcp_prompts.register_prompts(server, settings)
    mcp_completion.register_completion(server, settings, current)
    updates.bound_listen_streams(server)
    if legacy_subscriptions:
        updates.serve_legacy_subscriptions(server)
    return server


async def _relay(runtime: Runtime) -> None:
    """Publish other instances' job changes here (ending waits, telling listeners); like the watcher, it starts
    once the first requests are answered and never takes the server down."""
    await anyio.sleep(WATCH_START_DELAY_SECONDS)
    try:
        ledger = await anyio.to_thread.run_sync(lambda: runtime.jobs.ledger)
        await ledger.relay_changes(runtime.jobs.events.publish)
    except Exception:
        log.exception("relaying other instances' job changes stopped; waits still see them in the ledger")


async def _watch(runtime: Runtime) -> None:
    """Run the watcher; if it ever fails, the server goes on serving without it (the tools still keep results)."""
    await anyio.sleep(WATCH_START_DELAY_SECONDS)
    try:
        from server.jobs.watcher import Watcher

        await Watcher(runtime.jobs, lambda: runtime.upstream, runtime.settings).run()
    except Exception:
        log.exception("the job watcher stopped; results are still kept whenever get_fal_result fetches them")

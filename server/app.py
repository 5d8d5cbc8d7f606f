"""The composition root: settings in, a running MCP server out. It only composes.

The services the tools share live in `server.runtime` (`Runtime`), below both this module and the tools, so no
tool imports the root. `create_server` assembles the MCP face (tools, resources, prompts) on a `Runtime` and
starts the watcher and the relay of other instances' job changes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
from mcp.server.mcpserver import MCPServer

from server import __version__
from server.runtime import Runtime, open_runtime
from server.settings import Settings

if TYPE_CHECKING:
    from server.files.url_safety import Resolver

log = logging.getLogger(__name__)
WATCH_START_DELAY_SECONDS = 1.0  # the watcher starts once the first requests are answered

INSTRUCTIONS = (
    "Generate videos and images with fal.ai models and UniAPI's Kling and Luma routes. submit_fal_job starts a "
    "job and returns a request_id and its cost estimate at once (dry_run=true prices without sending); video jobs "
    "take 1-5 minutes. Then call get_fal_result with the request_id until done is true (get_fal_status shows queue "
    "position and logs). Results include media URLs to show the user."
)


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
    from tools import mcp_apps, mcp_completion, mcp_prompts, mcp_resources, mcp_tasks, mcp_tools, mcp_updates

    running: list[Runtime] = []
    updates = mcp_updates.JobUpdates(
        max_subscriptions=settings.max_subscriptions, max_subscription_bytes=settings.max_subscription_bytes
    )
    tasks = mcp_tasks.TasksExtension(
        updates.bus,
        plain_listen=updates.listen_bounded,
        check_listen=updates.check_listen,
        max_input_tasks=settings.max_input_tasks,
        max_listen_task_ids=settings.max_subscriptions,
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
            background.start_soon(tasks.run)
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
        extensions=[mcp_apps.build_apps(settings), tasks],
        subscriptions=updates.bus,
    )
    mcp_resources.register_resources(server, current)
    mcp_prompts.register_prompts(server, settings)
    mcp_completion.register_completion(server, settings, current)
    mcp_tasks.serve_listen(server, tasks)  # bounded as updates.listen_bounded; with taskIds, tasks too
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

"""Assembling the MCP server: settings + runtime lifespan + the tools."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from mcp.server.mcpserver import MCPServer

from server.runtime import Runtime, open_runtime
from server.settings import Settings

log = logging.getLogger(__name__)
WATCH_START_DELAY_SECONDS = 1.0  # the watcher starts once the first requests are answered

INSTRUCTIONS = (
    "Generate videos and images with fal.ai models. submit_fal_job starts a job and returns a request_id at "
    "once; video jobs take 1-5 minutes. Then call get_fal_result with the request_id until done is true "
    "(get_fal_status shows queue position and logs). Results include media URLs to show the user."
)


def create_server(settings: Settings) -> MCPServer[Runtime]:
    from tools import mcp_prompts, mcp_resources, mcp_tools

    running: list[Runtime] = []

    @asynccontextmanager
    async def lifespan(_: MCPServer[Runtime]) -> AsyncIterator[Runtime]:
        async with open_runtime(settings) as runtime, anyio.create_task_group() as background:
            if settings.watch_jobs:
                background.start_soon(_watch, runtime)
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
        version="0.1.0",
        lifespan=lifespan,
        log_level=settings.log_level,
        tools=mcp_tools.build_tools(),
    )
    mcp_resources.register_resources(server, current)
    mcp_prompts.register_prompts(server, settings)
    return server


async def _watch(runtime: Runtime) -> None:
    """Run the watcher; if it ever fails, the server goes on serving without it (the tools still keep results)."""
    await anyio.sleep(WATCH_START_DELAY_SECONDS)
    try:
        from server.watcher import Watcher
        from tools import records

        await Watcher(runtime, records.refresh).run()
    except Exception:
        log.exception("the job watcher stopped; results are still kept whenever get_fal_result fetches them")

"""Pushed job updates: a client following `fal://jobs/{request_id}` (or `fal://jobs`) hears when the job changes.

- Protocol 2026-07-28 (SEP-2575): the client opens `subscriptions/listen` naming the URIs it follows; each change
  is published as a `ResourceUpdated` event on the server's `SubscriptionBus`, and the SDK's listen handler
  delivers it on that stream. Works on every transport, stateless HTTP included.
- Protocol 2025-11-25: `resources/subscribe` / `resources/unsubscribe`, served here (MCPServer has no API for
  them); each change goes out as `notifications/resources/updated` on the subscribing connection's standalone
  channel (the stdio pipe, a stateful HTTP session's GET stream). Stateless HTTP has no such channel, so there
  the methods are not served and `resources.subscribe` is not declared at 2025-11-25.

What one client follows is bounded by count (FAL_MCP_MAX_SUBSCRIPTIONS) and by the total size of the URIs
(FAL_MCP_MAX_SUBSCRIPTION_BYTES): per connection for `resources/subscribe`, per stream for `subscriptions/listen`
(a URI may be megabytes long, and a stream keeps its list for as long as it is open). `fal://jobs` follows every
job in one URI.

Changes come from `Jobs.events` (each ledger write that changed a job, in this process or, relayed, in another
instance sharing the ledger). They are queued, coalesced per job, and sent by a background task, so a slow client
never holds up the code that changed the job.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ResourceUpdated, SubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_REQUEST,
    EmptyResult,
    SubscribeRequestParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
    UnsubscribeRequestParams,
)

from server.jobs.keeping import Jobs

log = logging.getLogger(__name__)

JOBS_URI = "fal://jobs"
NOTIFY_TIMEOUT_SECONDS = 10.0  # one stuck client must not hold up everybody else's updates


def job_uri(request_id: str) -> str:
    return f"{JOBS_URI}/{request_id}"


class JobUpdates:
    def __init__(
        self, *, max_subscriptions: int, max_subscription_bytes: int, bus: SubscriptionBus | None = None
    ) -> None:
        self.bus: SubscriptionBus = bus if bus is not None else InMemorySubscriptionBus()
        self._max_subscriptions = max_subscriptions
        self._max_subscription_bytes = max_subscription_bytes
        self._listen = ListenHandler(self.bus)
        self._legacy: dict[Connection, set[str]] = {}  # 2025-11-25 subscribers: connection -> URIs it follows
        self._pending: dict[str, None] = {}  # changed request ids not yet told, in order
        self._wake = anyio.Event()

    # ---- hearing of changes ----------------------------------------------------------------------------------

    def job_changed(self, request_id: str) -> None:
        """A `Jobs.events` listener: note the change; `run` tells the clients."""
        self._pending[request_id] = None
        self._wake.set()

    async def run(self, jobs: Jobs) -> None:
        """Tell clients of every change to `jobs`, until cancelled (runs in the server's lifespan)."""
        unsubscribe = jobs.events.subscribe(self.job_changed)
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                changed, self._pending = list(self._pending), {}
                for request_id in changed:
                    await self.resource_updated(job_uri(request_id))
                await self.resource_updated(JOBS_URI)  # the recent-jobs list changed too
        finally:
            unsubscribe()

    async def resource_updated(self, uri: str) -> None:
        """Tell every listen stream (2026-07-28) and every subscribed connection (2025-11-25) following `uri`."""
        try:
            await self.bus.publish(ResourceUpdated(uri=uri))
        except Exception:  # a custom bus failing must not end the updates
            log.exception("publishing an update of %s failed", uri)
        for connection, uris in list(self._legacy.items()):
            if uri in uris:
                with anyio.move_on_after(NOTIFY_TIMEOUT_SECONDS):
                    await connection.send_resource_updated(uri)  # best effort: never raises

    # ---- 2026-07-28: subscriptions/listen ----------------------------------------------------------------------

    async def listen_bounded(
        self, ctx: ServerRequestContext[Any, Any], params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        """`subscriptions/listen` by the SDK's handler, after checking what the stream would follow (served through
        tools.mcp_tasks, which adds the streams that follow tasks)."""
        self.check_listen(params)
        return await self._listen(ctx, params)

    def check_listen(self, params: SubscriptionsListenRequestParams) -> None:
        """Refuse a listen stream that would follow too many resource URIs, or too many bytes of them."""
        uris = params.notifications.resource_subscriptions or []
        self._check_bounds("This listen stream", len(uris), sum(map(_size, uris)), "ask for fewer")

    def _check_bounds(self, who: str, count: int, size: int, remedy: str) -> None:
        if count > self._max_subscriptions:
            raise MCPError(
                INVALID_REQUEST,
                f"{who} would follow {count} resources, more than the {self._max_subscriptions} allowed "
                f"(FAL_MCP_MAX_SUBSCRIPTIONS): {remedy}, or follow {JOBS_URI}, which changes with every job.",
            )
        if size > self._max_subscription_bytes:
            raise MCPError(
                INVALID_REQUEST,
                f"{who} would follow resource URIs of {size:,} bytes in all, more than the "
                f"{self._max_subscription_bytes:,} allowed (FAL_MCP_MAX_SUBSCRIPTION_BYTES): {remedy}, or follow "
                f"{JOBS_URI}, which changes with every job.",
            )

    # ---- 2025-11-25: resources/subscribe and resources/unsubscribe -------------------------------------------

    def serve_legacy_subscriptions(self, server: MCPServer[Any]) -> None:
        """Serve `resources/subscribe` (and so declare `resources.subscribe` at 2025-11-25). Only where the
        transport has a standalone channel to send updates on: stdio, in memory, stateful HTTP."""
        _add_request_handler(server, "resources/subscribe", SubscribeRequestParams, self._subscribe)
        _add_request_handler(server, "resources/unsubscribe", UnsubscribeRequestParams, self._unsubscribe)

    def legacy_subscriptions(self) -> int:
        """How many (connection, URI) subscriptions are held (for tests and diagnostics)."""
        return sum(len(uris) for uris in self._legacy.values())

    async def _subscribe(self, ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
        # Any URI is accepted, as listen streams accept any: one that never changes is simply never announced.
        connection = connection_of(ctx)
        uris = self._legacy.get(connection)
        if uris is None:
            uris = self._legacy[connection] = set()
            connection.exit_stack.callback(self._legacy.pop, connection, None)  # forgotten when it closes
        if params.uri not in uris:
            size = sum(map(_size, uris)) + _size(params.uri)
            self._check_bounds("This client", len(uris) + 1, size, "unsubscribe from some first")
        uris.add(params.uri)
        return EmptyResult()

    async def _unsubscribe(self, ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams) -> EmptyResult:
        self._legacy.get(connection_of(ctx), set()).discard(params.uri)
        return EmptyResult()


def _size(uri: str) -> int:
    return len(uri.encode("utf-8", "surrogatepass"))


# ---- the SDK's private parts, in one place ---------------------------------------------------------------------
# mcp 2.3 has no public way to serve resources/subscribe from an MCPServer, nor to reach the per-client Connection
# from a low-level handler's context (ServerSession is a per-request proxy that keeps it as `_connection`).
# tests/test_job_updates.py::test_subscriptions_end_with_the_session_and_the_private_sdk_parts_are_there fails
# loudly if either goes away.


def _add_request_handler(server: MCPServer[Any], method: str, params_type: Any, handler: Any) -> None:
    server._lowlevel_server.add_request_handler(method, params_type, handler)


def connection_of(ctx: ServerRequestContext[Any, Any]) -> Connection:
    connection = getattr(ctx.session, "_connection", None)
    if not isinstance(connection, Connection):
        raise RuntimeError("this mcp SDK keeps no Connection on ServerSession._connection; see tools/mcp_updates.py")
    return connection

"""Streamable HTTP for agent frameworks and remote hosts (`fal-queue-mcp --transport http`).

Loopback by default. Binding to any other address requires a bearer token (FAL_MCP_HTTP_TOKEN), checked in
constant time on every request; the SDK's DNS-rebinding protection (Host and Origin checks) stays on.

Stateless by default (FAL_MCP_HTTP_STATELESS): each request is served by a transport of its own and no session
is kept, so several instances behind a load balancer serve any request with no sticky sessions (nothing this
server does needs a session). Progress still streams on the response of the call it belongs to, and a wait
stops when its client goes away.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from server.http_sessions import DEFAULT_SESSIONS, SessionLimits, make_room_when_full
from server.settings import is_loopback_host

if TYPE_CHECKING:
    from server.http_guard import ConnectionLimits
    from server.settings import Settings

log = logging.getLogger(__name__)
TOKEN_VARIABLE = "FAL_MCP_HTTP_TOKEN"  # noqa: S105 - the variable's name, not a secret


class HttpConfigError(ValueError):
    pass


def check_bind(host: str, token: str | None) -> None:
    """Refuse to expose the server beyond this machine without a token."""
    if not is_loopback_host(host) and not token:
        raise HttpConfigError(
            f"refusing to listen on {host}, which is reachable from other machines, without a bearer token: "
            f"set {TOKEN_VARIABLE} (a long random string clients send as 'Authorization: Bearer <token>'), "
            "or bind to 127.0.0.1"
        )


def confine_local_files(settings: Settings, host: str) -> Settings:
    """Served beyond loopback, every token holder would browse and upload from the server account's home folder
    (the default root): there, local files are off unless FAL_MCP_FILE_ROOTS was set on purpose."""
    if is_loopback_host(host) or "file_roots" in settings.model_fields_set:
        return settings
    log.warning(
        "local files are off: %s is reachable from other machines and FAL_MCP_FILE_ROOTS is not set "
        "(set it to the folders clients may read from, e.g. a shared volume)",
        host,
    )
    return settings.model_copy(update={"file_roots": ()})


def http_app(
    server: MCPServer[Any],
    *,
    host: str,
    token: str | None,
    allowed_hosts: Sequence[str] = (),
    stateless: bool = False,
    sessions: SessionLimits = DEFAULT_SESSIONS,
) -> ASGIApp:
    """The SDK's streamable HTTP app behind the Host/Origin checks and, when a token is set, the token check.
    `stateless`: no sessions (build the server with `legacy_subscriptions=False`: nothing can be pushed);
    otherwise at most `sessions.max_sessions`, the longest idle closed to make room (see server/http_sessions.py)."""
    check_bind(host, token)
    names = sorted(_host_names(host, allowed_hosts))
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*names, *(f"{name}:*" for name in names)],
        allowed_origins=[origin for name in names for origin in (f"http://{name}:*", f"https://{name}:*")],
    )
    app: ASGIApp = server.streamable_http_app(
        transport_security=security,
        host=host,
        stateless_http=stateless,
        max_sessions=sessions.max_sessions,
        session_idle_timeout=sessions.idle_timeout,
    )
    if stateless:
        app = NoStandaloneStream(app)
    else:
        make_room_when_full(server.session_manager)
    return BearerToken(app, token) if token else app


class NoStandaloneStream:
    """Stateless, there is no session for server-initiated messages to reach, so a GET's stream would stay silent
    and hold its connection until the client gives up: answer 405, as the protocol allows, and clients carry on
    with POST alone."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "GET":
            headers = [(b"content-type", b"application/json"), (b"allow", b"POST, DELETE")]
            await send({"type": "http.response.start", "status": 405, "headers": headers})
            await send(
                {"type": "http.response.body", "body": b'{"error": "no stream to GET: this server is stateless"}'}
            )
            return
        await self._app(scope, receive, send)


def _host_names(host: str, allowed_hosts: Sequence[str]) -> set[str]:
    """Host header values clients may use: the bound address (loopback names for loopback) plus the extra ones
    (needed when binding 0.0.0.0: clients then name the machine, not the wildcard)."""
    names = {"127.0.0.1", "localhost", "[::1]"} if is_loopback_host(host) else {host}
    return names | {name.strip() for name in allowed_hosts if name.strip()}


class BearerToken:
    """Every HTTP request must carry `Authorization: Bearer <token>`; anything else is a 401."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
                    }
                )
                await send({"type": "http.response.body", "body": b'{"error": "missing or wrong bearer token"}'})
                return
        await self._app(scope, receive, send)


async def serve_http(
    server: MCPServer[Any],
    *,
    host: str,
    port: int,
    token: str | None,
    allowed_hosts: Sequence[str] = (),
    limits: ConnectionLimits,
    reserved_descriptors: int = 0,
    on_listening: Callable[[str], None] | None = None,
    stateless: bool = False,
    sessions: SessionLimits = DEFAULT_SESSIONS,
) -> None:
    """Serve until interrupted. Client connections are bounded (see `server.http_guard`): the soft file-descriptor
    limit is raised first, and the connection cap kept below what it leaves after `reserved_descriptors` (the
    server's own outgoing connections). `on_listening` gets the endpoint URL once the socket is bound (port 0: a
    free one)."""
    from server.http_guard import connection_budget, guarded_protocol, raise_fd_limit

    raise_fd_limit()
    budget = connection_budget(limits.max_connections, reserved=reserved_descriptors)
    if budget < limits.max_connections:
        log.warning(
            "serving at most %d HTTP connections at once (not %d): the open-files limit leaves no more",
            budget,
            limits.max_connections,
        )
    protocol, _ = guarded_protocol(replace(limits, max_connections=budget))
    app = http_app(server, host=host, token=token, allowed_hosts=allowed_hosts, stateless=stateless, sessions=sessions)
    # asyncio accepts up to `backlog` connections at a time before any of them is admitted: a quarter of the
    # budget keeps a flood of connections below the descriptor limit (no EMFILE, no one-second accept pause).
    backlog = max(8, budget // 4)
    # The MCP sessions are run here rather than in the app's lifespan, so that Ctrl-C (which cancels this
    # function, see `server.cli`) ends them like any task instead of failing uvicorn's lifespan protocol.
    # ws="none": MCP has no WebSocket transport, and uvicorn hands an upgraded socket to a protocol outside the
    # guard, whose slot would then never be given back (`websockets` is often installed, by uvicorn[standard]).
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", http=protocol, ws="none", backlog=backlog, lifespan="off"
    )
    try:
        sock = config.bind_socket()
    except SystemExit:  # uvicorn has logged why (the address is in use, say) and asks to exit
        raise HttpConfigError(
            f"cannot listen on {host} port {port}; choose another --port (0: any free one), or stop what uses it"
        ) from None
    if on_listening is not None:
        bound = sock.getsockname()[1]
        on_listening(f"http://{f'[{host}]' if ':' in host else host}:{bound}/mcp")
    async with server.session_manager.run():
        await _Uvicorn(config).serve(sockets=[sock])


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own Ctrl-C handling, which would wait for every open stream to close (an MCP client
    keeps one for its whole session): the command line handles Ctrl-C alike for every transport."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

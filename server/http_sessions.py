"""Stateful HTTP sessions (FAL_MCP_HTTP_STATELESS=false), bounded without locking anyone out.

The SDK keeps at most `max_sessions` sessions and answers 503 to anyone opening another while that many are open;
an idle one is kept for the whole idle timeout. So a single client opening sessions in a loop locked everyone else
out for half an hour (10,000 sessions, 30 minutes by default). Here, when the table is full, the session idle the
longest (no request in flight: no call being answered, no open GET stream) is closed to make room: its client
gets 404 on its next request and opens a new session, as the protocol asks. A 503 remains only when every
session has a request in flight, and each of those holds a connection (FAL_MCP_HTTP_MAX_CONNECTIONS, lower by
default), so idle sessions alone can never fill the table. All holders of the shared token are one user here, so
the bound is one for all, not one per token.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionLimits:
    """FAL_MCP_HTTP_MAX_SESSIONS and FAL_MCP_HTTP_SESSION_IDLE_TIMEOUT (same defaults)."""

    max_sessions: int = 1000
    idle_timeout: float = 1800.0


DEFAULT_SESSIONS = SessionLimits()


def make_room_when_full(manager: StreamableHTTPSessionManager) -> None:
    """Have `manager` close its longest-idle session when a new one would not fit, rather than refuse it.

    The SDK admits a session in `_admit_session`, called under its session-creation lock (so no two admissions
    race); the idle clock of a session is its transport's `idle_scope` deadline (infinite while a request is in
    flight). Both are private: tests/test_http.py fails plainly if an SDK upgrade moves them."""
    admit = manager._admit_session

    def admit_or_make_room(requestor: Any) -> StreamableHTTPServerTransport | None:
        if manager.max_sessions is not None and len(manager._server_instances) >= manager.max_sessions:
            close_longest_idle(manager)
        return admit(requestor)

    manager._admit_session = admit_or_make_room  # type: ignore[method-assign]


def close_longest_idle(manager: StreamableHTTPSessionManager) -> bool:
    """Close the session that has gone longest without a request in flight; False when every one is busy."""
    idle = []
    for session_id, transport in manager._server_instances.items():
        scope = transport.idle_scope
        if scope is not None and math.isfinite(scope.deadline) and not scope.cancel_called:
            idle.append((scope.deadline, session_id))  # one timeout for all: the earliest deadline idled longest
    if not idle:
        return False
    _, session_id = min(idle)
    transport = manager._server_instances.pop(session_id)
    manager._session_owners.pop(session_id, None)
    assert transport.idle_scope is not None
    transport.idle_scope.cancel()  # ends the session as its idle timeout would; its task then terminates it
    log.info("closed the longest idle HTTP session to make room for a new one (FAL_MCP_HTTP_MAX_SESSIONS)")
    return True

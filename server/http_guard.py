"""Keeping slow or idle HTTP clients from locking everyone else out (`--transport http`).

uvicorn holds a connection that never finishes its request for as long as the client likes, and accepts
connections until the process runs out of file descriptors; past that point nobody is served, token or not.
So every connection here is admitted by a shared `Admission`:

- at most `max_connections` are open at once (also kept below what the file-descriptor limit leaves);
- at most `max_pending` are still sending their request: past either bound the oldest such connection is
  closed, so a crowd of idle sockets cannot keep a new client waiting;
- a request (head and body) must arrive within `request_timeout` seconds of the connection being ready for it,
  and may not exceed `max_request_bytes`.

A connection whose request has arrived is never closed here: its answer (an event stream, say) runs as long as
it needs. For a server bound beyond loopback, a reverse proxy in front with header and body timeouts of its own
is still the recommendation (see the README).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

if sys.platform != "win32":  # no resource limits to read or raise on Windows
    import resource

log = logging.getLogger(__name__)

FD_TARGET = 65536  # the soft file-descriptor limit asked for at start-up (never above the hard limit)
FD_MARGIN = 32  # descriptors kept free for the ledger, logs, DNS and the like
_WAITING_FOR_REQUEST = frozenset({h11.IDLE, h11.SEND_BODY})  # h11 states of a client still sending its request
_REFUSED = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
_TOO_LARGE = b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int
    max_pending: int
    request_timeout: float
    max_request_bytes: int


def raise_fd_limit(target: int = FD_TARGET) -> int:
    """Raise the soft limit on open files towards `target` (as far as the hard limit allows); the new soft limit.

    Many systems start processes with a soft limit of 256 or 1024 and a far higher hard limit.
    """
    if sys.platform == "win32":
        return target
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = target if hard == resource.RLIM_INFINITY else min(target, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):  # e.g. macOS refuses more than OPEN_MAX
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connection_budget(wanted: int, *, reserved: int) -> int:
    """How many client connections fit: `wanted`, unless the file-descriptor limit leaves fewer (after those
    already open, `reserved` more for outgoing connections, and a margin)."""
    if sys.platform == "win32":
        return wanted
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - _open_descriptors() - reserved - FD_MARGIN))


def _open_descriptors() -> int:
    for folder in ("/proc/self/fd", "/dev/fd"):
        with contextlib.suppress(OSError):
            return len(os.listdir(folder))
    return FD_MARGIN  # unknown: assume a few


class Admission:
    """The connections of one server: how many are open, and which are still sending their request (oldest
    first)."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open: set[GuardedProtocol] = set()
        self.pending: OrderedDict[GuardedProtocol, None] = OrderedDict()
        self.evicted = 0

    def admit(self, connection: GuardedProtocol) -> bool:
        """Make room for a new connection (closing the oldest pending ones), or refuse it: False."""
        while self.pending and (
            len(self.pending) >= self.limits.max_pending or len(self.open) >= self.limits.max_connections
        ):
            oldest, _ = self.pending.popitem(last=False)
            self.open.discard(oldest)  # gone now, not once its closing is reported
            self.evicted += 1
            oldest.close_idle()
        if len(self.open) >= self.limits.max_connections:
            return False  # every open connection is busy with a request: this one cannot be served now
        self.open.add(connection)
        return True

    def waiting(self, connection: GuardedProtocol) -> None:
        self.pending[connection] = None
        self.pending.move_to_end(connection)

    def settled(self, connection: GuardedProtocol) -> None:
        self.pending.pop(connection, None)

    def gone(self, connection: GuardedProtocol) -> None:
        self.settled(connection)
        self.open.discard(connection)


class GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol under an `Admission` (set on a subclass by `guarded_protocol`)."""

    admission: Admission

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._received = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.admission.admit(self):
            transport.write(_REFUSED)
            transport.close()
            return
        self._await_request()

    def data_received(self, data: bytes) -> None:
        if self._deadline is not None:  # still receiving a request: count it against the size cap
            self._received += len(data)
            if self._received > self.admission.limits.max_request_bytes:
                self._stop_waiting()
                self.transport.write(_TOO_LARGE)
                self.transport.close()
                return
        super().data_received(data)
        if self._deadline is not None and self.conn.their_state not in _WAITING_FOR_REQUEST:
            self._stop_waiting()  # the whole request is in: its answer may take as long as it needs

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state in _WAITING_FOR_REQUEST:
            self._await_request()  # kept alive: the next request is held to the same bounds

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        self.admission.gone(self)
        super().connection_lost(exc)

    def close_idle(self) -> None:
        """Close a connection that has not sent a whole request (evicted, or out of time)."""
        self._stop_waiting()
        if not self.transport.is_closing():
            self.transport.close()

    def _await_request(self) -> None:
        self._stop_waiting()
        self._received = 0
        self._deadline = self.loop.call_later(self.admission.limits.request_timeout, self._too_slow)
        self.admission.waiting(self)

    def _stop_waiting(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.admission.settled(self)

    def _too_slow(self) -> None:
        self._deadline = None
        self.close_idle()


def guarded_protocol(limits: ConnectionLimits) -> tuple[type[GuardedProtocol], Admission]:
    """A protocol class for `uvicorn.Config(http=...)` whose connections share one new `Admission`."""
    admission = Admission(limits)
    return type("Guarded", (GuardedProtocol,), {"admission": admission}), admission

"""Slow and idle clients against `--transport http`: with few file descriptors and hundreds of sockets that never
finish a request, a client holding the token is still served; a request that trickles in is cut off; the soft
open-files limit is raised at start-up. The server runs as a real subprocess on 127.0.0.1."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from server.http_guard import Admission, ConnectionLimits
from server.sandbox import Sandbox
from tests.helpers import initialize_request, server_env
from tests.servers import free_port

resource = pytest.importorskip("resource")  # POSIX only
Server = subprocess.Popen[bytes]
TOKEN = "hostile-http-token-8c1f0e"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json, text/event-stream"}
LINUX_PROC = Path("/proc/self/limits").exists()


def _files_limit(soft: int, hard: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return apply


@contextlib.contextmanager
def _http_server(sandbox: Sandbox, stderr: Path, *, soft: int, hard: int, **env: str) -> Iterator[tuple[str, Server]]:
    port = free_port()
    # stderr to a file, not a pipe: a pipe nobody reads while the test runs would fill up and stall the server
    errors = stderr.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "server", "--transport", "http", "--port", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=errors,
        env=server_env(sandbox, FAL_MCP_HTTP_TOKEN=TOKEN, **env),
        preexec_fn=_files_limit(soft, hard),
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 30
        while True:  # serving once any HTTP answer comes back
            assert process.poll() is None, stderr.read_text()[-2000:]
            with contextlib.suppress(httpx.TransportError):
                httpx.get(url, headers=HEADERS, timeout=2)
                break
            assert time.monotonic() < deadline, "the HTTP server did not start"
            time.sleep(0.1)
        yield url, process
    finally:
        process.kill()
        process.wait(timeout=10)
        errors.close()


def _initialize(url: str, timeout: float) -> httpx.Response:
    return httpx.post(url, json=initialize_request("hostile-http"), headers=HEADERS, timeout=timeout)


def _idle_sockets(port: int, count: int, first_bytes: bytes = b"") -> list[socket.socket]:
    """Connections that never finish a request: opened without waiting (the accept queue may be full), each
    sending `first_bytes` once it is connected."""
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        sockets.append(sock)
    if first_bytes:
        time.sleep(0.5)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.send(first_bytes)
    return sockets


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX resource limits")
def test_an_authorized_client_is_served_while_idle_sockets_are_open(sandbox: Sandbox, tmp_path: Path) -> None:
    # 128 descriptors in all, and requests may take minutes to arrive: only the bounds free a slot in time.
    stderr = tmp_path / "stderr.txt"
    with _http_server(sandbox, stderr, soft=128, hard=128, FAL_MCP_HTTP_REQUEST_TIMEOUT="300") as (url, _process):
        port = httpx.URL(url).port
        assert port is not None
        idle = _idle_sockets(port, 300)
        partial = _idle_sockets(port, 60, b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n")
        try:
            answer = _initialize(url, timeout=60)
            assert answer.status_code == 200, answer.text
            assert "fal-queue-mcp" in answer.text
            refused = httpx.post(url, json=initialize_request("no-token"), timeout=60)
            assert refused.status_code == 401
        finally:
            for sock in idle + partial:
                sock.close()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX resource limits")
def test_a_request_that_trickles_in_is_cut_off(sandbox: Sandbox, tmp_path: Path) -> None:
    stderr = tmp_path / "stderr.txt"
    with _http_server(sandbox, stderr, soft=1024, hard=1024, FAL_MCP_HTTP_REQUEST_TIMEOUT="1") as (url, _process):
        port = httpx.URL(url).port
        with socket.create_connection(("127.0.0.1", port), timeout=30) as slow:
            slow.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            started = time.monotonic()
            closed = False
            while time.monotonic() - started < 30:  # one byte every 0.2 s would hold a plain server forever
                try:
                    slow.sendall(b"X")
                except OSError:
                    closed = True
                    break
                slow.settimeout(0.2)
                try:
                    if slow.recv(100) == b"":
                        closed = True
                        break
                except TimeoutError:
                    pass
                except OSError:  # cut off with a reset rather than a close, as a busy machine may see it
                    closed = True
                    break
            assert closed, "a request trickling in was held open"
        # A prompt client is still served, and a session outlives the 1-second bound: it holds for requests
        # arriving, not for answers (the SDK's event streams stay open as long as they need).
        assert anyio.run(_session_lasting, url, 2.5) == {"list": True, "later": True}


async def _session_lasting(url: str, seconds: float) -> dict[str, bool]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        listed = await client.list_tools()
        await anyio.sleep(seconds)
        later = await client.call_tool("list_fal_models", {"family": "sora"})
    return {"list": len(listed.tools) == 8, "later": not later.is_error}


@pytest.mark.skipif(not LINUX_PROC, reason="reads /proc/<pid>/limits")
def test_the_soft_open_files_limit_is_raised_at_start_up(sandbox: Sandbox, tmp_path: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip("the hard limit leaves nothing to raise")
    with _http_server(sandbox, tmp_path / "stderr.txt", soft=256, hard=hard) as (_url, process):
        limits = Path(f"/proc/{process.pid}/limits").read_text()
    soft_now = next(line.split()[3] for line in limits.splitlines() if line.startswith("Max open files"))
    assert soft_now == "unlimited" or int(soft_now) > 256


# ---- the admission rules on their own ------------------------------------------------------------------------


class FakeConnection:
    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self.closed = False

    def close_idle(self) -> None:
        self.closed = True


def test_admission_closes_the_oldest_waiting_connection_first() -> None:
    admission = Admission(ConnectionLimits(max_connections=4, max_pending=2, request_timeout=5, max_request_bytes=1))
    a, b, c, d, e = (FakeConnection(admission) for _ in range(5))
    for connection in (a, b):
        assert admission.admit(connection)
        admission.waiting(connection)
    admission.settled(a)  # a's request is in: it is never closed for others
    assert admission.admit(c) and not b.closed
    admission.waiting(c)
    assert admission.admit(d) and b.closed and not a.closed  # two were waiting: the oldest, b, made room
    admission.settled(c)
    # a, c and d are busy with requests, b is gone: room for one more, then none (busy ones are never closed)
    assert admission.admit(e)
    assert not admission.admit(FakeConnection(admission))
    assert not (a.closed or c.closed or d.closed or e.closed)


_UPGRADE = (
    b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Authorization: Bearer " + TOKEN.encode() + b"\r\n\r\n"
)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX resource limits")
def test_websocket_upgrades_do_not_use_up_connection_slots(sandbox: Sandbox, tmp_path: Path) -> None:
    # With `websockets` installed (uvicorn[standard] brings it), uvicorn hands an Upgrade request's socket to its
    # WebSocket protocol, and the connection's slot was never given back: a handful of upgrades locked everyone
    # out. MCP has no WebSocket transport, so HTTP is served with WebSockets off.
    pytest.importorskip("websockets")  # the test extras install it: without it uvicorn never upgrades
    stderr = tmp_path / "stderr.txt"
    limits = {"FAL_MCP_HTTP_MAX_CONNECTIONS": "4", "FAL_MCP_HTTP_REQUEST_TIMEOUT": "1"}
    with _http_server(sandbox, stderr, soft=1024, hard=1024, **limits) as (url, _process):
        port = httpx.URL(url).port
        assert port is not None
        for _ in range(8):  # twice the slots, one after another: none is held once its client has gone
            with socket.create_connection(("127.0.0.1", port), timeout=30) as upgrade:
                upgrade.sendall(_UPGRADE)
                upgrade.recv(4096)
        time.sleep(1.5)  # past the request timeout: an upgraded connection was then no longer evictable
        answer = _initialize(url, timeout=30)
        assert answer.status_code == 200, answer.text

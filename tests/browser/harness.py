"""The pieces of the MCP Apps browser tests that are not tests: the host page's server, the sandbox page's CSP,
the server under test as a subprocess, the host bundle, and waiting on a frame.

Origins, all on loopback:
  host     http://localhost:P    the host page (the official AppBridge) and /mcp, proxied to the server under test
  sandbox  http://127.0.0.1:P    sandbox.html, with a Content-Security-Policy built from the resource's csp
  server   http://127.0.0.1:S    `fal-queue-mcp --sandbox --transport http` (a subprocess)
  media    http://127.0.0.1:U    its sandbox upstream, which serves the jobs' media files
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.servers import free_port, serving_in_thread, stop, wait_listening

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHROMIUM = os.environ.get("FAL_MCP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Tall: Chromium runs no animation frames (and may not decode video) in off-screen cross-origin frames.
VIEWPORT = {"width": 900, "height": 1400}

_UNSAFE_SOURCE = re.compile(r"[;,\s'\"]")


def build_csp(csp: dict[str, Any] | None) -> str:
    """The sandbox CSP a host derives from a resource's `_meta.ui.csp`: the reference hosts' defaults plus the
    declared domains. Without `resourceDomains` media is limited to the sandbox's own origin, `data:` and `blob:`."""
    csp = csp or {}

    def sources(key: str) -> str:
        values = csp.get(key) or []
        return " ".join(v for v in values if isinstance(v, str) and v and not _UNSAFE_SOURCE.search(v))

    res, conn, frames, base = (
        sources(k) for k in ("resourceDomains", "connectDomains", "frameDomains", "baseUriDomains")
    )
    directives = [
        "default-src 'self' 'unsafe-inline'",
        f"script-src 'self' 'unsafe-inline' blob: data: {res}",
        f"style-src 'self' 'unsafe-inline' blob: data: {res}",
        f"img-src 'self' data: blob: {res}",
        f"font-src 'self' data: blob: {res}",
        f"media-src 'self' data: blob: {res}",
        f"connect-src 'self' {conn}",
        f"worker-src 'self' blob: {res}",
        f"frame-src {frames}" if frames else "frame-src 'none'",
        "object-src 'none'",
        f"base-uri {base}" if base else "base-uri 'none'",
    ]
    return "; ".join(d.strip() for d in directives)


# ---- the host page's server -------------------------------------------------------------------------------------

_FORWARDED = ("content-type", "accept", "mcp-session-id", "mcp-protocol-version", "last-event-id")
_RETURNED = ("content-type", "mcp-session-id", "mcp-protocol-version")


def host_app(bundle_dir: Path, mcp_url: str) -> Starlette:
    """The host page and its bundle under /host, sandbox.html, and /mcp streamed through to the server under test
    (so the page talks to it from its own origin: the server sends no CORS headers, as most MCP servers)."""

    async def host_file(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ("index.html", "host.js"):
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(bundle_dir / name, headers={"Cache-Control": "no-store"})

    async def sandbox(request: Request) -> Response:
        try:
            csp = json.loads(request.query_params.get("csp") or "{}")
        except ValueError:
            csp = {}
        headers = {
            "Content-Security-Policy": build_csp(csp if isinstance(csp, dict) else {}),
            "Cache-Control": "no-store",
        }
        return HTMLResponse((HERE / "sandbox.html").read_text(), headers=headers)

    async def mcp(request: Request) -> Response:
        client = httpx.AsyncClient(timeout=httpx.Timeout(30, read=None), trust_env=False)
        headers = {k: v for k, v in request.headers.items() if k in _FORWARDED}
        upstream = client.build_request(request.method, mcp_url, headers=headers, content=await request.body())
        answer = await client.send(upstream, stream=True)

        async def close() -> None:
            await answer.aclose()
            await client.aclose()

        returned = {k: v for k, v in answer.headers.items() if k in _RETURNED}
        return StreamingResponse(answer.aiter_raw(), answer.status_code, returned, background=BackgroundTask(close))

    return Starlette(
        routes=[
            Route("/host/{name}", host_file),
            Route("/sandbox.html", sandbox),
            Route("/mcp", mcp, methods=["GET", "POST", "DELETE"]),
        ]
    )


@contextmanager
def serving(app: Any) -> Iterator[int]:
    """The host page's server: uvicorn on 127.0.0.1 (a free port) in a daemon thread; yields the port."""
    with serving_in_thread(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2) as port:
        yield port


# ---- the server under test --------------------------------------------------------------------------------------


def server_command() -> list[str]:
    """`fal-queue-mcp` as installed next to this Python, else the same entry point as a module."""
    script = Path(sys.executable).with_name("fal-queue-mcp")
    return [str(script)] if script.exists() else [sys.executable, "-m", "server"]


@contextmanager
def running_server(env: dict[str, str], log: Path, *args: str) -> Iterator[str]:
    """Start `fal-queue-mcp --sandbox --transport http` and yield its /mcp URL once it accepts connections."""
    port = free_port()
    command = [*server_command(), "--sandbox", "--transport", "http", "--port", str(port), *args]
    with log.open("wb") as stderr:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr)
        try:
            wait_listening(process, port, log.read_text, seconds=30)
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            stop(process, seconds=10)


# ---- the host bundle --------------------------------------------------------------------------------------------


def build_host(out_dir: Path) -> Path:
    """esbuild host.ts (with the locked @modelcontextprotocol packages) into out_dir, beside index.html."""
    esbuild = HERE / "node_modules" / ".bin" / "esbuild"
    subprocess.run(
        [
            str(esbuild),
            str(HERE / "host.ts"),
            "--bundle",
            "--format=esm",
            "--target=es2022",
            f"--outfile={out_dir / 'host.js'}",
        ],
        cwd=HERE,
        check=True,
        capture_output=True,
    )
    shutil.copy(HERE / "index.html", out_dir / "index.html")
    return out_dir


# ---- frames -----------------------------------------------------------------------------------------------------


def wait_until(frame: Any, expression: str, timeout: float = 20.0, what: str = "") -> Any:
    """Poll an expression in a frame until it is truthy; return its value. (`frame.wait_for_function` needs
    'unsafe-eval', which the view's CSP does not allow; `evaluate` does not.)"""
    deadline = time.monotonic() + timeout
    while True:
        value = frame.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or expression}")
        time.sleep(0.05)


def wait_until_true(check: Any, timeout: float, what: str) -> None:
    """Call `check()` until it returns true."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)

"""Streamable HTTP: the official client over HTTP, the bearer token, DNS-rebinding checks, refusing to bind
beyond loopback without a token; and the CLI's sandbox settings."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from server.app import create_server
from server.cli import main, sandbox_settings
from server.http_transport import http_app
from server.sandbox import Sandbox
from server.settings import Settings
from tests.helpers import SEED_INPUT, SEED_MODEL, make_settings

TOKEN = "test-bearer-token-5f2c9a"


def _serve(app) -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/mcp"
    server.should_exit = True
    thread.join(timeout=5)


@pytest.fixture
def open_url(settings: Settings) -> Iterator[str]:
    yield from _serve(http_app(create_server(settings), host="127.0.0.1", token=None))


@pytest.fixture
def token_url(settings: Settings) -> Iterator[str]:
    yield from _serve(http_app(create_server(settings), host="127.0.0.1", token=TOKEN))


@pytest.mark.anyio
async def test_tools_over_http(sandbox: Sandbox, open_url: str) -> None:
    async with Client(open_url) as client:
        submitted = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
        assert not submitted.is_error
        request_id = submitted.structured_content["request_id"]
        sandbox.finish_now(request_id)
        result = await client.call_tool("get_fal_result", {"request_id": request_id})
    assert result.structured_content["done"] is True


@pytest.mark.anyio
async def test_bearer_token_is_required_and_accepted(token_url: str) -> None:
    async with httpx.AsyncClient() as plain:
        answer = await plain.post(token_url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        wrong = await plain.post(token_url, json={}, headers={"Authorization": "Bearer nope"})
    assert answer.status_code == 401 and wrong.status_code == 401
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
        Client(streamable_http_client(token_url, http_client=http)) as client,
    ):
        tools = await client.list_tools()
    assert "submit_fal_job" in {tool.name for tool in tools.tools}


def test_foreign_host_header_is_refused(open_url: str) -> None:
    answer = httpx.post(open_url, json={}, headers={"Host": "evil.example:80"})
    assert answer.status_code == 421


def test_non_loopback_bind_without_token_refuses_to_start(
    capsys: pytest.CaptureFixture[str], monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("FAL_MCP_HTTP_TOKEN", raising=False)
    monkeypatch.setenv("FAL_MCP_STATE_DIR", str(tmp_path))  # never this machine's own ledger, whatever is in it
    assert main(["--transport", "http", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "FAL_MCP_HTTP_TOKEN" in capsys.readouterr().err


def test_sandbox_settings_point_everything_at_the_sandbox(sandbox: Sandbox, monkeypatch) -> None:
    monkeypatch.setenv("UNIAPI_KEY", "a-real-key-never-used")
    monkeypatch.setenv("FAL_MCP_STATE_DIR", "/should/not/be/used")
    settings = sandbox_settings(sandbox)
    assert settings.base_url == sandbox.base_url == settings.storage_token_base
    assert settings.api_key() == sandbox.config.key and "a-real-key-never-used" not in settings.secrets()
    assert settings.state_dir is not None and Path(tempfile.gettempdir()) in settings.state_dir.parents


def test_make_settings_helper_is_isolated(sandbox: Sandbox) -> None:
    assert make_settings(sandbox).state_dir != make_settings(sandbox).state_dir

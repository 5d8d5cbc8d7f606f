"""The server as a real stdio subprocess, driven by the official MCP client and by raw JSON-RPC lines."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from server.sandbox import Sandbox
from tests.helpers import (
    INITIALIZED,
    SEED_INPUT,
    SEED_MODEL,
    initialize_request,
    jsonrpc_line,
    server_env,
)

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[1]


def _env(sandbox: Sandbox, **extra: str) -> dict[str, str]:
    return server_env(sandbox, **extra)


async def test_seed_example_over_stdio(sandbox: Sandbox, tmp_path: Path) -> None:
    stderr_path = tmp_path / "stderr.txt"
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "server"], env=_env(sandbox, FAL_MCP_LOG_LEVEL="DEBUG")
    )
    with stderr_path.open("w") as errlog, anyio.fail_after(30):
        async with Client(params) as client:
            client.session  # noqa: B018 - connected
            sub = await client.call_tool(
                "submit_fal_job", {"model": SEED_MODEL.removeprefix("fal-ai/"), "input": SEED_INPUT}
            )
            assert not sub.is_error
            request_id = sub.structured_content["request_id"]
            status = await client.call_tool("get_fal_status", {"request_id": request_id})
            assert status.structured_content["status"] in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")
            while True:
                result = await client.call_tool("get_fal_result", {"request_id": request_id})
                assert not result.is_error
                if result.structured_content["done"]:
                    break
                await anyio.sleep(0.2)
            assert result.structured_content["media"][0]["content_type"] == "video/mp4"
    del errlog
    post = sandbox.seen("POST")[0]
    assert post.path == "/fal-ai/kling-video/v2.1/standard/image-to-video"
    assert post.authorization == f"Key {sandbox.config.key}"
    assert json.loads(post.body) == SEED_INPUT
    host = sandbox.base_url.removeprefix("http://")
    assert {r.host for r in sandbox.seen()} == {host}
    assert {r.path.split("/requests/")[0] for r in sandbox.seen("GET")} == {"/fal-ai/kling-video"}


def _rpc(process: subprocess.Popen[bytes], message: dict) -> None:
    assert process.stdin is not None
    process.stdin.write(jsonrpc_line(message))
    process.stdin.flush()


def test_stdout_carries_only_json_rpc_and_no_key(sandbox: Sandbox) -> None:
    """Raw session: every stdout line is JSON-RPC; the key appears on neither stream, even at DEBUG."""
    process = subprocess.Popen(
        [sys.executable, "-m", "server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(sandbox, FAL_MCP_LOG_LEVEL="DEBUG"),
    )
    _rpc(process, initialize_request("raw"))
    _rpc(process, INITIALIZED)
    _rpc(
        process,
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "submit_fal_job", "arguments": {"model": SEED_MODEL, "input": SEED_INPUT}},
        },
    )
    _rpc(
        process,
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "get_fal_status", "arguments": {"request_id": "../../etc"}},
        },
    )
    watchdog = threading.Timer(20, process.kill)
    watchdog.start()
    assert process.stdout is not None
    lines: list[bytes] = []
    answered: set[int] = set()
    while answered != {1, 2, 3} and (line := process.stdout.readline()):
        lines.append(line)
        answered.add(json.loads(line).get("id", 0))
    out_rest, err = process.communicate()  # closes stdin: the server exits on end of input
    watchdog.cancel()
    out = b"".join(lines) + out_rest
    messages = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    assert all(m.get("jsonrpc") == "2.0" for m in messages)
    by_id = {m.get("id"): m for m in messages if "id" in m}
    assert by_id[2]["result"]["structuredContent"]["model"] == SEED_MODEL
    assert by_id[3]["result"]["isError"] is True
    assert sandbox.config.key not in out.decode() and sandbox.config.key not in err.decode()

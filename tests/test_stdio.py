"""The server as a real stdio subprocess, driven by the official MCP client and by raw JSON-RPC lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from server.sandbox import Sandbox, SandboxConfig
from tests.helpers import (
    INITIALIZED,
    SEED_INPUT,
    SEED_MODEL,
    clean_env,
    initialize_request,
    jsonrpc_line,
    server_env,
)
from tests.stdio_session import StdioSession
from tools.catalog.sandbox_rules import CatalogRules

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[1]


def _env(sandbox: Sandbox, **extra: str) -> dict[str, str]:
    return server_env(sandbox, **extra)


async def test_seed_example_over_stdio(sandbox: Sandbox, tmp_path: Path) -> None:
    stderr_path = tmp_path / "stderr.txt"
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "server"], env=_env(sandbox, FAL_MCP_LOG_LEVEL="DEBUG")
    )
    with stderr_path.open("w") as errlog, anyio.fail_after(120):  # a loaded machine starts Python slowly
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


def test_stdout_carries_only_json_rpc_and_no_key(sandbox: Sandbox) -> None:
    """Raw session: every stdout line is JSON-RPC; the key appears on neither stream, even at DEBUG."""
    session = StdioSession(_env(sandbox, FAL_MCP_LOG_LEVEL="DEBUG"))
    try:
        session.initialize("raw")
        submitted = session.call("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
        refused = session.call("get_fal_status", {"request_id": "../../etc"})
    finally:
        finished = session.finish()  # closes stdin: the server exits on end of input
    messages = [json.loads(line) for line in finished.stdout.splitlines() if line.strip()]
    assert messages and all(m.get("jsonrpc") == "2.0" for m in messages)
    assert submitted["result"]["structuredContent"]["model"] == SEED_MODEL
    assert refused["result"]["isError"] is True
    assert sandbox.config.key not in finished.stdout and sandbox.config.key not in finished.stderr
    assert finished.code == 0


def test_a_sandbox_job_outlives_the_process_that_took_it(tmp_path: Path) -> None:
    """A client that starts a server per call (the Inspector's CLI, LangChain's default client): the job submitted
    through one `--sandbox` process is followed to its result through the next, on the same state folder."""
    env = clean_env(FAL_MCP_STATE_DIR=str(tmp_path / "state"))
    args = ("--sandbox", "--sandbox-queue-seconds", "0.2", "--sandbox-run-seconds", "0.4")
    first = StdioSession(env, args)
    try:
        first.initialize("per-call")
        submitted = first.call("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
    finally:
        assert first.finish().code == 0
    request_id = submitted["result"]["structuredContent"]["request_id"]
    second = StdioSession(env, args)
    try:
        second.initialize("per-call")
        status = second.call("get_fal_status", {"request_id": request_id})
        result = second.call("get_fal_result", {"request_id": request_id, "wait_seconds": 30})
    finally:
        finished = second.finish()
    assert status["result"]["isError"] is False, status
    answer = result["result"]["structuredContent"]
    assert answer["done"] is True, (answer, finished.stderr[-2000:])
    assert answer["media"][0]["content_type"] == "video/mp4"
    assert list((tmp_path / "state").iterdir()) == [tmp_path / "state" / "sandbox"]  # never the real ledger


def test_a_client_that_leaves_mid_wait_ends_the_server_quietly() -> None:
    """The client closes its end of the server's stdout while a get_fal_result wait sends progress: the server's
    next write finds no reader. That is the client leaving, not a crash: exit 0, and no traceback on stderr."""
    with Sandbox(SandboxConfig(queue_seconds=0.1, run_seconds=120), CatalogRules()) as sandbox:
        process = subprocess.Popen(
            [sys.executable, "-m", "server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(sandbox, FAL_MCP_PROGRESS_INTERVAL="0.2"),
        )
        assert process.stdin is not None and process.stdout is not None
        try:

            def send(message: dict[str, object]) -> None:
                process.stdin.write(jsonrpc_line(message))  # type: ignore[union-attr]
                process.stdin.flush()  # type: ignore[union-attr]

            send(initialize_request("leaving"))
            assert json.loads(process.stdout.readline())["id"] == 1
            send(INITIALIZED)
            submit = {"name": "submit_fal_job", "arguments": {"model": SEED_MODEL, "input": SEED_INPUT}}
            send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": submit})
            request_id = json.loads(process.stdout.readline())["result"]["structuredContent"]["request_id"]
            wait = {
                "name": "get_fal_result",
                "arguments": {"request_id": request_id, "wait_seconds": 60},
                "_meta": {"progressToken": "p"},
            }
            send({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": wait})
            assert json.loads(process.stdout.readline())["method"] == "notifications/progress"  # mid-wait
            process.stdout.close()  # the client leaves; stdin stays open: only the failed write can tell
            code = process.wait(timeout=60)
            stderr = process.stderr.read().decode(errors="replace")  # type: ignore[union-attr]
        finally:
            process.kill()
            process.wait()
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr[-3000:]
    assert code == 0, stderr[-3000:]

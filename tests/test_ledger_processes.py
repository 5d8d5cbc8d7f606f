"""The ledger across real server processes, on both backends: a SIGKILL mid-burst loses no accepted job; two
servers share it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from server.sandbox import Sandbox
from tests.helpers import INITIALIZED, SEED_INPUT, SEED_MODEL, initialize_request, jsonrpc_line, server_env
from tests.postgres import Backend

ROOT = Path(__file__).resolve().parents[1]
BURST = 30


def _env(sandbox: Sandbox, backend: Backend) -> dict[str, str]:
    return server_env(sandbox, FAL_MCP_WATCH_JOBS="false") | backend.env()


def test_sigkill_mid_burst_loses_no_accepted_job(sandbox: Sandbox, backend: Backend) -> None:
    sandbox.config.run_seconds = 60
    process = subprocess.Popen(
        [sys.executable, "-m", "server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(sandbox, backend),
    )
    assert process.stdin is not None
    process.stdin.write(jsonrpc_line(initialize_request("burst")))
    process.stdin.write(jsonrpc_line(INITIALIZED))
    for index in range(BURST):
        body = dict(SEED_INPUT, prompt=f"burst {index}")
        process.stdin.write(
            jsonrpc_line(
                {
                    "jsonrpc": "2.0",
                    "id": 100 + index,
                    "method": "tools/call",
                    "params": {"name": "submit_fal_job", "arguments": {"model": SEED_MODEL, "input": body}},
                }
            )
        )
    process.stdin.flush()
    deadline = time.monotonic() + 20
    while len(sandbox.seen("POST")) < BURST // 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)

    accepted = set(sandbox.jobs)
    assert accepted, "the burst never reached the sandbox"
    with backend.open() as ledger:
        rows = ledger.list_jobs(limit=200)
    recorded = [row.request_id for row in rows if row.request_id is not None]
    pending = [row for row in rows if row.request_id is None]
    assert len(recorded) == len(set(recorded)), "a request id was recorded twice"
    assert set(recorded) <= accepted
    missing = accepted - set(recorded)
    # An accepted job whose answer the killed server never recorded still has its attempt row ('submitting').
    assert len(missing) <= len(pending), (len(missing), len(pending))
    assert all(row.state in ("submitting", "unknown") for row in pending)
    assert len(rows) <= BURST and len(sandbox.seen("POST")) <= BURST  # nothing re-sent
    # every attempt row says what was sent
    assert all(row.input["prompt"].startswith("burst ") for row in rows)

    # Started again, the server knows every recorded job by its request id alone, and lists every attempt.
    anyio.run(_check_restart, sandbox, backend, recorded, len(rows))


async def _check_restart(sandbox: Sandbox, backend: Backend, recorded: list[str], attempts: int) -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "server"], env=_env(sandbox, backend))
    with anyio.fail_after(30):
        async with Client(params) as client:
            listed = (await client.call_tool("list_fal_jobs", {"limit": 200})).structured_content
            assert listed["count"] == attempts
            for request_id in recorded[:5]:
                status = await client.call_tool("get_fal_status", {"request_id": request_id})
                assert not status.is_error and status.structured_content["model"] == SEED_MODEL


@pytest.mark.anyio
async def test_two_server_processes_share_one_ledger(sandbox: Sandbox, backend: Backend) -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "server"], env=_env(sandbox, backend))
    submitted: list[str] = []

    async def burst(client: Client, name: str) -> None:
        async def one(index: int) -> None:
            body = dict(SEED_INPUT, prompt=f"{name} {index}")
            answer = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": body})
            assert not answer.is_error
            submitted.append(answer.structured_content["request_id"])

        async with anyio.create_task_group() as group:
            for index in range(10):
                group.start_soon(one, index)

    with anyio.fail_after(60):
        async with Client(params) as first, Client(params) as second:
            async with anyio.create_task_group() as group:
                group.start_soon(burst, first, "first")
                group.start_soon(burst, second, "second")
            # each server sees the other's jobs
            listed = (await first.call_tool("list_fal_jobs", {"limit": 50})).structured_content
            other = submitted[-1]
            status = await second.call_tool("get_fal_status", {"request_id": other})
    assert listed["count"] == 20 and {job["request_id"] for job in listed["jobs"]} == set(submitted)
    assert not status.is_error

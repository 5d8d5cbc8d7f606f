"""Long jobs end to end, through MCP: a bounded wait sends growing progress notifications and returns the result
mid-wait, and cancelling the tool call stops the wait (not the job).

The waiting logic itself is tested without MCP in `test_waiter.py` (stream, polling, heartbeat, cancellation) and
`test_follow.py` (the cap, failures, cancelling jobs).
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from server.sandbox import Sandbox
from tests.helpers import SEED_INPUT, SEED_MODEL, connect, make_settings, text_of

pytestmark = pytest.mark.anyio
GENEROUS = 30.0  # seconds: a bound that only a hang reaches


async def _submit(client: Any) -> str:
    answer = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
    assert not answer.is_error, text_of(answer)
    return str(answer.structured_content["request_id"])


def _gets(sandbox: Sandbox, suffix: str = "") -> list[str]:
    """The job's GET requests (not the submit's price and balance, under /v1/)."""
    return [r.path for r in sandbox.seen("GET") if r.path.endswith(suffix) and not r.path.startswith("/v1/")]


async def test_wait_returns_the_result_mid_wait_with_growing_progress(sandbox: Sandbox) -> None:
    # queued long enough that the wait sees the queue even when the machine is slow to start it
    sandbox.config.queue_seconds, sandbox.config.run_seconds = 2.0, 1.5
    settings = make_settings(sandbox, progress_interval=0.2)
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total, message))

    async with connect(settings) as client:
        request_id = await _submit(client)
        started = time.monotonic()
        answer = await client.call_tool(
            "get_fal_result", {"request_id": request_id, "wait_seconds": 40}, progress_callback=on_progress
        )
        waited = time.monotonic() - started
    assert not answer.is_error and answer.structured_content["done"] is True
    assert waited < GENEROUS  # returned when the job finished, not after the 40 s asked for
    values = [u[0] for u in updates]
    assert len(updates) >= 4
    assert values == sorted(values) and len(set(values)) == len(values)  # strictly growing
    assert all(total == 40 for _, total, _ in updates)
    messages = " | ".join(u[2] or "" for u in updates)
    assert "Queued" in messages and "Running" in messages and "Generating: step" in messages
    # streamed: one stream request and one result request for the whole wait
    assert len(_gets(sandbox)) <= 3 and len(_gets(sandbox, "/stream")) == 1


async def test_cancelling_the_call_stops_the_wait_and_leaves_the_job_running(sandbox: Sandbox) -> None:
    sandbox.config.run_seconds = 600
    settings = make_settings(sandbox, use_status_stream=False, poll_first_interval=0.1, poll_max_interval=0.1)
    async with connect(settings) as client:
        request_id = await _submit(client)
        async with anyio.create_task_group() as group:
            group.start_soon(client.call_tool, "get_fal_result", {"request_id": request_id, "wait_seconds": 40})
            with anyio.fail_after(GENEROUS):
                while len(_gets(sandbox, "/status")) < 3:  # it is polling
                    await anyio.sleep(0.05)
            group.cancel_scope.cancel()
        # The cancel reaches the server as a message: wait for the polls to stop (they come every 0.1 s while
        # the wait lasts), then check that they stay stopped.
        with anyio.fail_after(GENEROUS):
            while True:
                polls = len(_gets(sandbox, "/status"))
                await anyio.sleep(1.0)
                if len(_gets(sandbox, "/status")) == polls:
                    break
        await anyio.sleep(1.0)
        assert len(_gets(sandbox, "/status")) == polls
        status = await client.call_tool("get_fal_status", {"request_id": request_id})
    assert status.structured_content["status"] in ("IN_QUEUE", "IN_PROGRESS")
    assert sandbox.seen("PUT") == []

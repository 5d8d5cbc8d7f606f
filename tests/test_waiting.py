"""Long jobs: bounded waits with progress, stream or adaptive polling, cancellation of waits and of jobs."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from server.sandbox import Fault, Sandbox
from tests.helpers import SEED_INPUT, SEED_MODEL, connect, make_settings, text_of

pytestmark = pytest.mark.anyio


async def _submit(client: Any) -> str:
    answer = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
    assert not answer.is_error, text_of(answer)
    return str(answer.structured_content["request_id"])


def _gets(sandbox: Sandbox, suffix: str = "") -> list[str]:
    return [r.path for r in sandbox.seen("GET") if r.path.endswith(suffix)]


async def test_wait_returns_the_result_mid_wait_with_growing_progress(sandbox: Sandbox) -> None:
    sandbox.config.queue_seconds, sandbox.config.run_seconds = 0.5, 1.5
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
    assert waited < 20  # returned when the job finished, long before the 40 s asked for
    values = [u[0] for u in updates]
    assert len(updates) >= 4
    assert values == sorted(values) and len(set(values)) == len(values)  # strictly growing
    messages = " | ".join(u[2] or "" for u in updates)
    assert "Queued" in messages and "Running" in messages and "Generating: step" in messages
    # streamed: one stream request and one result request for the whole wait
    assert len(_gets(sandbox)) <= 3 and len(_gets(sandbox, "/stream")) == 1


async def test_wait_is_capped_and_ends_as_a_normal_still_running_answer(sandbox: Sandbox) -> None:
    sandbox.config.run_seconds = 60
    settings = make_settings(sandbox, max_wait_seconds=1.0)
    async with connect(settings) as client:
        request_id = await _submit(client)
        started = time.monotonic()
        answer = await client.call_tool("get_fal_result", {"request_id": request_id, "wait_seconds": 600})
        waited = time.monotonic() - started
    assert not answer.is_error
    result = answer.structured_content
    assert result["done"] is False and result["status"] in ("IN_QUEUE", "IN_PROGRESS")
    assert "not an error" in result["next"] and "wait_seconds=1" in result["next"]
    assert waited < 10  # the 600 s asked for were capped at the 1 s setting


async def test_cancelling_a_wait_stops_it_and_leaves_the_job_running(sandbox: Sandbox) -> None:
    sandbox.config.run_seconds = 60
    settings = make_settings(sandbox, use_status_stream=False, poll_first_interval=0.1, poll_max_interval=0.1)
    async with connect(settings) as client:
        request_id = await _submit(client)
        with anyio.move_on_after(0.6):
            await client.call_tool("get_fal_result", {"request_id": request_id, "wait_seconds": 30})
        await anyio.sleep(1.0)  # the wait must be gone within a second of the cancel
        polls_after_cancel = len(_gets(sandbox, "/status"))
        await anyio.sleep(0.6)
        assert len(_gets(sandbox, "/status")) == polls_after_cancel
        assert polls_after_cancel >= 3  # it was polling before the cancel
        status = await client.call_tool("get_fal_status", {"request_id": request_id})
    assert status.structured_content["status"] in ("IN_QUEUE", "IN_PROGRESS")
    assert sandbox.seen("PUT") == []


async def test_cancelling_a_streamed_wait_closes_the_stream(sandbox: Sandbox) -> None:
    sandbox.config.run_seconds = 60
    async with connect(make_settings(sandbox)) as client:
        request_id = await _submit(client)
        with anyio.move_on_after(0.5):
            await client.call_tool("get_fal_result", {"request_id": request_id, "wait_seconds": 30})
        # the server holds no stream any more: a new wait may open one (the slot was released)
        with anyio.move_on_after(0.5):
            await client.call_tool("get_fal_result", {"request_id": request_id, "wait_seconds": 30})
    assert len(_gets(sandbox, "/stream")) == 2
    assert sandbox.jobs[request_id].cancelled is False


@pytest.mark.parametrize("refusal", [404, 405])
async def test_refused_stream_falls_back_to_polling(sandbox: Sandbox, refusal: int) -> None:
    sandbox.inject(Fault("/status/stream", status=refusal, body=b'{"detail": "Not Found"}'))
    settings = make_settings(sandbox, poll_first_interval=0.1, poll_max_interval=0.3)
    async with connect(settings) as client:
        first = await _submit(client)
        answer = await client.call_tool("get_fal_result", {"request_id": first, "wait_seconds": 20})
        assert answer.structured_content["done"] is True
        second = await _submit(client)
        answer = await client.call_tool("get_fal_result", {"request_id": second, "wait_seconds": 20})
        assert answer.structured_content["done"] is True
    assert len(_gets(sandbox, "/stream")) == 1  # refused once, then remembered: the second wait polled
    assert len(_gets(sandbox, "/status")) >= 2


async def test_stream_dropping_mid_way_falls_back_to_polling(sandbox: Sandbox) -> None:
    sandbox.config.drop_streams_after = 1
    settings = make_settings(sandbox, poll_first_interval=0.1, poll_max_interval=0.3)
    async with connect(settings) as client:
        request_id = await _submit(client)
        answer = await client.call_tool("get_fal_result", {"request_id": request_id, "wait_seconds": 20})
    assert not answer.is_error and answer.structured_content["done"] is True
    assert len(_gets(sandbox, "/stream")) == 1 and len(_gets(sandbox, "/status")) >= 1


async def test_polling_backs_off(sandbox: Sandbox) -> None:
    sandbox.config.run_seconds = 3.0
    settings = make_settings(sandbox, use_status_stream=False, poll_first_interval=0.2, poll_max_interval=1.0)
    async with connect(settings) as client:
        request_id = await _submit(client)
        answer = await client.call_tool("get_fal_result", {"request_id": request_id, "wait_seconds": 20})
    assert answer.structured_content["done"] is True
    polls = len(_gets(sandbox, "/status"))
    # a 0.1 s loop would poll ~32 times for a 3.2 s job; 0.2 s backing off by 1.5x to 1 s needs about 6
    assert 3 <= polls <= 10


async def test_failed_job_during_wait_is_an_error(sandbox: Sandbox) -> None:
    sandbox.fail_next.append("content policy violation")
    async with connect(make_settings(sandbox)) as client:
        request_id = await _submit(client)
        answer = await client.call_tool("get_fal_result", {"request_id": request_id, "wait_seconds": 20})
    assert answer.is_error and "content policy violation" in text_of(answer)


async def test_cancel_tool_answers_for_each_upstream_answer(sandbox: Sandbox) -> None:
    sandbox.config.run_seconds = 30
    async with connect(make_settings(sandbox)) as client:
        running = await _submit(client)
        requested = await client.call_tool("cancel_fal_job", {"request_id": running})
        assert not requested.is_error and requested.structured_content["outcome"] == "requested"
        result = await client.call_tool("get_fal_result", {"request_id": running})
        assert result.is_error and "cancelled" in text_of(result).lower()

        finished = await _submit(client)
        sandbox.finish_now(finished)
        already = await client.call_tool("cancel_fal_job", {"request_id": finished})
        assert already.structured_content["outcome"] == "already_completed"

        unknown = await client.call_tool("cancel_fal_job", {"request_id": "nope", "model": SEED_MODEL})
        assert unknown.is_error and "does not know" in text_of(unknown)

        sandbox.inject(Fault("/cancel", status=404, body=b"Not Found", content_type="text/plain"))
        unsupported = await client.call_tool("cancel_fal_job", {"request_id": finished})
        assert unsupported.is_error and "does not support cancelling" in text_of(unsupported)


async def test_cancel_through_uniapi_reads_as_unsupported(sandbox: Sandbox) -> None:
    sandbox.config.flavor = "uniapi"
    settings = make_settings(sandbox, provider="uniapi", uniapi_key=sandbox.config.key, fal_key=None)
    async with connect(settings) as client:
        request_id = await _submit(client)
        answer = await client.call_tool("cancel_fal_job", {"request_id": request_id})
        assert answer.is_error and "does not support cancelling" in text_of(answer) and "uniapi" in text_of(answer)
        # no stream through UniAPI either: the wait polls and still gets the result
        done = await client.call_tool("get_fal_result", {"request_id": request_id, "wait_seconds": 20})
    assert done.structured_content["done"] is True

"""Following a job without MCP (`tools.follow` on a `Runtime`): the cap on waits, failures met while waiting,
and cancelling jobs, against the sandbox upstream."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from server.errors import CancelUnsupportedError, JobFailedError, NotFoundError, UpstreamUnavailableError
from server.runtime import Runtime, open_runtime
from server.sandbox import Fault, Sandbox
from tests.helpers import SEED_INPUT, SEED_MODEL, make_settings
from tools import follow
from tools.submit import submit

pytestmark = pytest.mark.anyio
GENEROUS = 30.0  # seconds: a bound that only a hang reaches


@asynccontextmanager
async def runtime(sandbox: Sandbox, **overrides: Any) -> AsyncIterator[Runtime]:
    async with open_runtime(make_settings(sandbox, **overrides)) as rt:
        yield rt


async def _submit(rt: Runtime) -> str:
    return (await submit(rt, SEED_MODEL, SEED_INPUT)).request_id


async def test_a_wait_is_capped_and_ends_as_a_still_running_answer(sandbox: Sandbox) -> None:
    sandbox.config.run_seconds = 600
    async with runtime(sandbox, max_wait_seconds=1.0) as rt:
        request_id = await _submit(rt)
        started = time.monotonic()
        answer = await follow.result(rt, request_id, None, wait_seconds=600)
        waited = time.monotonic() - started
    assert answer.done is False and answer.status in ("IN_QUEUE", "IN_PROGRESS")
    assert "not an error" in answer.next and "wait_seconds=1" in answer.next
    assert waited < GENEROUS  # the 600 s asked for were capped at the 1 s setting


async def test_a_wait_in_which_the_upstream_never_answered_is_a_failure(sandbox: Sandbox) -> None:
    """Not "no status yet, this is not an error": every request of the wait failed, and the answer says so."""
    async with runtime(sandbox, request_timeout=20.0) as rt:
        request_id = await _submit(rt)
        sandbox.inject(Fault(f"/requests/{request_id}", status=504, delay=120, times=100))
        with pytest.raises(UpstreamUnavailableError) as raised:
            await follow.result(rt, request_id, None, wait_seconds=1)
        row = await rt.jobs.get(request_id)
    assert "gave no status" in str(raised.value) and "not an error" not in str(raised.value)
    assert row is not None and row.state == "submitted"  # nothing is concluded about the job itself


async def test_a_job_failing_during_the_wait_is_a_kept_failure(sandbox: Sandbox) -> None:
    sandbox.fail_next.append("content policy violation")
    async with runtime(sandbox) as rt:
        request_id = await _submit(rt)
        with pytest.raises(JobFailedError) as raised:
            await follow.result(rt, request_id, None, wait_seconds=20)
        row = await rt.jobs.get(request_id)
    assert "content policy violation" in str(raised.value)
    assert row is not None and row.state == "failed"


async def test_cancel_answers_for_each_upstream_answer(sandbox: Sandbox) -> None:
    sandbox.config.run_seconds = 30
    async with runtime(sandbox) as rt:
        running = await _submit(rt)
        requested = await follow.cancel(rt, running, None)
        assert requested.outcome == "requested"
        with pytest.raises(JobFailedError, match=r"(?i)cancelled"):
            await follow.result(rt, running, None)

        finished = await _submit(rt)
        sandbox.finish_now(finished)
        already = await follow.cancel(rt, finished, None)
        assert already.outcome == "already_completed"

        with pytest.raises(NotFoundError, match="does not know"):
            await follow.cancel(rt, "nope", SEED_MODEL)

        sandbox.inject(Fault("/cancel", status=404, body=b"Not Found", content_type="text/plain"))
        with pytest.raises(CancelUnsupportedError, match="does not support cancelling"):
            await follow.cancel(rt, finished, None)


async def test_cancel_through_uniapi_reads_as_unsupported_and_waits_poll(sandbox: Sandbox) -> None:
    sandbox.config.flavor = "uniapi"
    async with runtime(sandbox, provider="uniapi", uniapi_key=sandbox.config.key, fal_key=None) as rt:
        request_id = await _submit(rt)
        with pytest.raises(CancelUnsupportedError) as raised:
            await follow.cancel(rt, request_id, None)
        assert "uniapi" in str(raised.value)
        # no stream through UniAPI either: the wait polls and still gets the result
        done = await follow.result(rt, request_id, None, wait_seconds=20)
    assert done.done is True
    assert any(r.path.endswith("/status") for r in sandbox.seen("GET"))

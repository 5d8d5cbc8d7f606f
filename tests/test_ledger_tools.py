"""The job ledger through the tools, on both backends: kept results, restarts, the watcher, list_fal_jobs,
fal://jobs."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from server.runtime import open_ledger
from server.sandbox import Fault, Sandbox
from server.settings import Settings
from tests.helpers import SEED_INPUT, SEED_MODEL, connect, make_settings, text_of
from tests.postgres import Backend

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(sandbox: Sandbox, backend: Backend) -> Settings:
    return make_settings(sandbox, **backend.settings())


async def _submit(client: Any, body: dict[str, Any] | None = None) -> str:
    answer = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": body or SEED_INPUT})
    assert not answer.is_error, text_of(answer)
    return str(answer.structured_content["request_id"])


async def test_result_is_served_from_the_ledger_after_the_upstream_forgot_it(sandbox: Sandbox, settings) -> None:
    async with connect(settings) as client:
        request_id = await _submit(client)
        sandbox.finish_now(request_id)
        first = await client.call_tool("get_fal_result", {"request_id": request_id})
        assert first.structured_content["done"] is True
    sandbox.expire(request_id)
    requests_before = len(sandbox.seen())
    async with connect(settings) as client:  # a restart, same ledger
        again = await client.call_tool("get_fal_result", {"request_id": request_id})
        status = await client.call_tool("get_fal_status", {"request_id": request_id})
    assert again.structured_content["output"] == first.structured_content["output"]
    assert "ledger" in again.structured_content["next"]
    assert status.structured_content["outcome"] == "succeeded"
    assert len(sandbox.seen()) == requests_before  # served without asking the upstream


async def test_expired_and_never_kept_says_so(sandbox: Sandbox, settings) -> None:
    async with connect(settings) as client:
        request_id = await _submit(client)
        sandbox.expire(request_id)
        answer = await client.call_tool("get_fal_result", {"request_id": request_id})
    assert answer.is_error and "no longer has request" in text_of(answer)


async def test_failures_are_recorded(sandbox: Sandbox, settings) -> None:
    sandbox.fail_next.append("out of credits")
    async with connect(settings) as client:
        request_id = await _submit(client)
        sandbox.finish_now(request_id)
        assert (await client.call_tool("get_fal_result", {"request_id": request_id})).is_error
        listed = (await client.call_tool("list_fal_jobs", {"status": "failed"})).structured_content
    assert [job["request_id"] for job in listed["jobs"]] == [request_id]
    assert "out of credits" in listed["jobs"][0]["error"]


async def test_list_jobs_survives_a_restart_with_filters(sandbox: Sandbox, settings) -> None:
    async with connect(settings) as client:
        ids = [await _submit(client) for _ in range(3)]
        other = await client.call_tool(
            "submit_fal_job", {"model": "fal-ai/flux/dev", "input": {"prompt": "a lighthouse"}}
        )
        sandbox.finish_now(ids[0])
        await client.call_tool("get_fal_result", {"request_id": ids[0]})
    async with connect(settings) as client:
        everything = (await client.call_tool("list_fal_jobs", {})).structured_content
        kling = (await client.call_tool("list_fal_jobs", {"model": SEED_MODEL, "limit": 2})).structured_content
        done = (await client.call_tool("list_fal_jobs", {"status": "completed"})).structured_content
        future = (await client.call_tool("list_fal_jobs", {"since": "2999-01-01"})).structured_content
        bad = await client.call_tool("list_fal_jobs", {"status": "exploded"})
        bad_since = await client.call_tool("list_fal_jobs", {"since": "yesterday-ish"})
    assert [job["request_id"] for job in everything["jobs"]] == [other.structured_content["request_id"], *reversed(ids)]
    assert [job["request_id"] for job in kling["jobs"]] == [ids[2], ids[1]]
    assert [job["request_id"] for job in done["jobs"]] == [ids[0]]
    assert done["jobs"][0]["media_urls"][0].endswith("/output.mp4")
    assert future["count"] == 0
    assert bad.is_error and "status must be one of" in text_of(bad)
    assert bad_since.is_error and "ISO 8601" in text_of(bad_since)


async def test_jobs_resources(sandbox: Sandbox, settings) -> None:
    async with connect(settings) as client:
        request_id = await _submit(client)
        listing = json.loads((await client.read_resource("fal://jobs")).contents[0].text)
        one = json.loads((await client.read_resource(f"fal://jobs/{request_id}")).contents[0].text)
    assert listing["jobs"][0]["request_id"] == request_id
    assert one["input"] == SEED_INPUT and one["status"] == "submitted"


async def test_submit_with_unknown_outcome_is_recorded_and_never_resent(sandbox: Sandbox, backend: Backend) -> None:
    settings = make_settings(sandbox, **backend.settings(), submit_timeout=0.5)
    sandbox.inject(Fault("POST /fal-ai/", status=200, delay=2.0, body=b'{"request_id": "late"}'))
    async with connect(settings) as client:
        answer = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
        assert answer.is_error
        assert "Do not resubmit blindly" in text_of(answer) and "status 'unknown'" in text_of(answer)
        listed = (await client.call_tool("list_fal_jobs", {"status": "unknown"})).structured_content
    assert len(sandbox.seen("POST")) == 1  # never re-sent
    assert listed["count"] == 1 and "request_id" not in listed["jobs"][0]  # no answer, so no id


async def test_refused_submit_is_recorded_as_rejected(sandbox: Sandbox, backend: Backend) -> None:
    settings = make_settings(sandbox, **backend.settings(), fal_key="not-the-key")
    async with connect(settings) as client:
        answer = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
        listed = (await client.call_tool("list_fal_jobs", {"status": "rejected"})).structured_content
    assert answer.is_error and listed["count"] == 1


async def test_the_watcher_keeps_results_nobody_asked_for(sandbox: Sandbox, backend: Backend) -> None:
    settings = make_settings(
        sandbox, **backend.settings(), watch_jobs=True, watch_first_interval=0.2, watch_max_interval=0.5
    )
    async with connect(settings) as client:
        request_id = await _submit(client)
        ledger = open_ledger(settings)
        with anyio.fail_after(15):
            while (row := ledger.get(request_id)) is None or row.state != "completed":
                await anyio.sleep(0.2)
        ledger.close()
    sandbox.expire(request_id)
    async with connect(settings) as client:
        answer = await client.call_tool("get_fal_result", {"request_id": request_id})
    assert answer.structured_content["done"] is True
    status_checks = [r for r in sandbox.seen("GET") if r.path.endswith("/status")]
    assert 1 <= len(status_checks) <= 10  # bounded: backing off, not a tight loop


async def test_stored_input_never_keeps_data_uris_or_keys(sandbox: Sandbox, settings) -> None:
    body = {"prompt": f"my key is {sandbox.config.key}", "image_url": "data:image/png;base64," + "A" * 5000}
    async with connect(settings) as client:
        request_id = await _submit(client, body)
        one = json.loads((await client.read_resource(f"fal://jobs/{request_id}")).contents[0].text)
    assert sandbox.config.key not in json.dumps(one)
    assert one["input"]["image_url"].startswith("data:image/png;base64,…") and len(one["input"]["image_url"]) < 100


async def test_a_failing_watcher_never_takes_the_server_down(sandbox: Sandbox, backend: Backend, monkeypatch) -> None:
    from server import app
    from server.jobs.watcher import Watcher

    async def broken(self: Watcher) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(Watcher, "round", broken)
    monkeypatch.setattr(app, "WATCH_START_DELAY_SECONDS", 0.0)
    async with connect(make_settings(sandbox, **backend.settings(), watch_jobs=True)) as client:
        await anyio.sleep(0.3)  # the watcher has started and failed by now
        answer = await client.call_tool("list_fal_jobs", {})
    assert not answer.is_error


async def test_the_watcher_leaves_jobs_being_waited_on_alone(sandbox: Sandbox, backend: Backend) -> None:
    sandbox.config.run_seconds = 2.0
    settings = make_settings(
        sandbox, **backend.settings(), watch_jobs=True, watch_first_interval=0.1, watch_max_interval=0.1
    )
    async with connect(settings) as client:
        request_id = await _submit(client)
        answer = await client.call_tool("get_fal_result", {"request_id": request_id, "wait_seconds": 20})
    assert answer.structured_content["done"] is True
    # the wait streamed the job; the watcher, checking every 0.1 s, never polled it meanwhile
    assert [r.path for r in sandbox.seen("GET") if r.path.endswith("/status")] == []

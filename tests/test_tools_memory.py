"""The three core tools through an in-memory MCP client, against the real sandbox upstream."""

from __future__ import annotations

import json

import anyio
import pytest

from server.sandbox import Fault, Sandbox
from tests.helpers import SEED_INPUT, SEED_MODEL, connect, make_settings, text_of

pytestmark = pytest.mark.anyio


async def _wait_completed(client, request_id: str) -> dict:
    """Poll get_fal_status until the job completes: its last status carries every log line, however late the
    polls come on a loaded machine (a result fetched first would end the job's upstream polling early)."""
    with anyio.fail_after(30):
        while True:
            answer = await client.call_tool("get_fal_status", {"request_id": request_id})
            assert not answer.is_error, text_of(answer)
            if answer.structured_content["status"] == "COMPLETED":
                return answer.structured_content
            await anyio.sleep(0.1)


async def test_seed_example_through_all_three_tools(sandbox: Sandbox, settings) -> None:
    sandbox.config.run_seconds = 3.0  # still running when first asked, however slow the machine is to ask
    async with connect(settings) as client:
        submitted = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
        assert not submitted.is_error, text_of(submitted)
        sub = submitted.structured_content
        assert sub["model"] == SEED_MODEL and sub["status"] == "IN_QUEUE" and sub["validated"] is True
        assert any("aspect_ratio" in note for note in sub["notes"])
        assert "get_fal_result" in sub["next"]

        status = (await client.call_tool("get_fal_status", {"request_id": sub["request_id"]})).structured_content
        assert status["status"] in ("IN_QUEUE", "IN_PROGRESS") and status["outcome"] == "pending"
        assert status["elapsed_seconds"] is not None

        early = await client.call_tool("get_fal_result", {"request_id": sub["request_id"]})
        assert not early.is_error and early.structured_content["done"] is False
        assert "not an error" in early.structured_content["next"]

        completed = await _wait_completed(client, sub["request_id"])
        assert completed["outcome"] == "succeeded"
        done = await client.call_tool("get_fal_result", {"request_id": sub["request_id"]})
        assert not done.is_error and done.structured_content["done"] is True
        result = done.structured_content
        assert result["output"]["video"]["url"].startswith(sandbox.base_url + "/files/")
        assert result["media"] == [
            {"url": result["output"]["video"]["url"], "content_type": "video/mp4", "field": "video"}
        ]
        links = [block for block in done.content if block.type == "resource_link"]
        assert [(str(link.uri), link.mime_type) for link in links] == [(result["media"][0]["url"], "video/mp4")]

        final = (await client.call_tool("get_fal_status", {"request_id": sub["request_id"]})).structured_content
        assert final["status"] == "COMPLETED" and final["outcome"] == "succeeded"
        assert final["logs"] == [f"Generating: step {i} of 4" for i in range(1, 5)]  # de-duplicated across calls

    posts = sandbox.seen("POST")
    assert len(posts) == 1
    assert posts[0].path == "/" + SEED_MODEL
    assert posts[0].authorization == f"Key {sandbox.config.key}"
    assert posts[0].json() == SEED_INPUT
    gets = sandbox.seen("GET")
    assert {r.path for r in gets} == {
        f"/fal-ai/kling-video/requests/{sub['request_id']}/status",
        f"/fal-ai/kling-video/requests/{sub['request_id']}",
        "/v1/models/pricing",  # the submit's price (fal's platform API: the sandbox's, beside a loopback upstream)
        "/v1/account/billing",  # and the balance it is checked against
    }


async def test_uniapi_spelling_and_explicit_model(sandbox: Sandbox, settings) -> None:
    async with connect(settings) as client:
        short = SEED_MODEL.removeprefix("fal-ai/")
        submitted = await client.call_tool("submit_fal_job", {"model": short, "input": SEED_INPUT})
        request_id = submitted.structured_content["request_id"]
        assert submitted.structured_content["model"] == SEED_MODEL
    # A restarted server sharing the ledger knows the job without its model.
    async with connect(settings) as client:
        known = await client.call_tool("get_fal_status", {"request_id": request_id})
        assert not known.is_error and known.structured_content["model"] == SEED_MODEL
    # A server with another ledger needs the model; both spellings work.
    async with connect(make_settings(sandbox)) as client:
        refused = await client.call_tool("get_fal_status", {"request_id": request_id})
        assert refused.is_error and "model" in text_of(refused)
        answer = await client.call_tool("get_fal_status", {"request_id": request_id, "model": short})
        assert not answer.is_error and answer.structured_content["model"] == SEED_MODEL


async def test_failed_job_is_plainly_failed(sandbox: Sandbox, settings) -> None:
    sandbox.fail_next.append("GPU ran out of memory")
    async with connect(settings) as client:
        sub = (await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})).structured_content
        sandbox.finish_now(sub["request_id"])
        status = (await client.call_tool("get_fal_status", {"request_id": sub["request_id"]})).structured_content
        assert status["status"] == "COMPLETED" and status["outcome"] == "failed"
        assert "GPU ran out of memory" in status["error"]
        result = await client.call_tool("get_fal_result", {"request_id": sub["request_id"]})
        assert result.is_error and "GPU ran out of memory" in text_of(result)


async def test_local_validation_names_every_field_and_sends_nothing(sandbox: Sandbox, settings) -> None:
    bad = {"prompt": "x" * 2501, "duration": 7, "cfg_scale": 3}
    async with connect(settings) as client:
        answer = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": bad})
    text = text_of(answer)
    assert answer.is_error
    for expected in ("image_url is required", "duration", "'5' or '10'", "you sent 7", "cfg_scale", "prompt"):
        assert expected in text
    assert sandbox.seen() == []


async def test_uncatalogued_model_passes_through_with_a_note(sandbox: Sandbox, settings) -> None:
    async with connect(settings) as client:
        answer = await client.call_tool("submit_fal_job", {"model": "fal-ai/some-new/model", "input": {"q": 1}})
    assert not answer.is_error
    assert answer.structured_content["validated"] is False
    assert "not in this server's catalog" in answer.structured_content["notes"][0]
    assert sandbox.seen("POST")[0].json() == {"q": 1}


async def test_missing_key_names_the_variable_and_sends_nothing(sandbox: Sandbox) -> None:
    settings = make_settings(sandbox, provider="uniapi", fal_key=None)
    async with connect(settings) as client:
        tools = await client.list_tools()
        assert {t.name for t in tools.tools} >= {"submit_fal_job", "get_fal_status", "get_fal_result"}
        answer = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
    assert answer.is_error and "UNIAPI_KEY" in text_of(answer)
    assert sandbox.seen() == []


async def test_wrong_key_is_reported_without_echoing_it(sandbox: Sandbox) -> None:
    settings = make_settings(sandbox, fal_key="wrong-key-abcdef123")
    async with connect(settings) as client:
        answer = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
    assert answer.is_error and "FAL_KEY" in text_of(answer) and "wrong-key-abcdef123" not in text_of(answer)


@pytest.mark.parametrize(
    ("arguments", "phrase"),
    [
        ({"request_id": "../../admin"}, "not a valid request id"),
        ({"request_id": "abc", "model": "https://evil.example/x"}, "not a valid fal endpoint id"),
        ({"request_id": "abc", "model": "fal-ai/%2e%2e/x"}, "not a valid fal endpoint id"),
    ],
)
async def test_hostile_ids_are_refused_before_any_request(sandbox: Sandbox, settings, arguments, phrase) -> None:
    async with connect(settings) as client:
        answer = await client.call_tool("get_fal_result", arguments)
    assert answer.is_error and phrase in text_of(answer)
    assert sandbox.seen() == []


async def test_unknown_request_id_is_a_clear_404(sandbox: Sandbox, settings) -> None:
    async with connect(settings) as client:
        answer = await client.call_tool("get_fal_status", {"request_id": "no-such-job", "model": SEED_MODEL})
    assert answer.is_error and "does not know this request id" in text_of(answer)


@pytest.mark.parametrize(
    ("fault", "phrase"),
    [
        (Fault("status", status=503), "unavailable (HTTP 503)"),
        (Fault("status", status=429, headers={"Retry-After": "0"}), "rate limiting"),
        (Fault("status", status=500, body=b"<html><body>Oops</body></html>", content_type="text/html"), "HTTP 500"),
        (Fault("status", status=200, body=b"<html>maintenance</html>", content_type="text/html"), "HTML page"),
        (Fault("status", status=200, body=b'{"status": "IN_QUE', content_type="application/json"), "not a JSON"),
        (Fault("status", status=302, headers={"Location": "https://evil.example/steal"}), "redirect"),
    ],
)
async def test_upstream_failures_become_actionable_errors(sandbox: Sandbox, fault: Fault, phrase: str) -> None:
    settings = make_settings(sandbox, retry_deadline=0.0)
    fault.times = 50
    sandbox.inject(fault)
    async with connect(settings) as client:
        answer = await client.call_tool("get_fal_status", {"request_id": "abc", "model": SEED_MODEL})
    assert answer.is_error, text_of(answer)
    assert phrase in text_of(answer)
    assert "Traceback" not in text_of(answer)
    assert all(r.host.startswith("127.0.0.1") for r in sandbox.seen())


async def test_transient_failures_are_retried_for_reads(sandbox: Sandbox, settings) -> None:
    async with connect(settings) as client:
        sub = (await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})).structured_content
        sandbox.inject(Fault("/status", status=503, times=2))
        sandbox.inject(Fault("/status", status=429, headers={"Retry-After": "0"}))
        answer = await client.call_tool("get_fal_status", {"request_id": sub["request_id"]})
    assert not answer.is_error, text_of(answer)
    assert len([r for r in sandbox.seen("GET") if r.path.endswith("/status")]) == 4


async def test_uniapi_answers_are_handled(sandbox: Sandbox) -> None:
    sandbox.config.flavor = "uniapi"
    sandbox.config.run_seconds = 600  # queued or running whenever it is asked
    settings = make_settings(sandbox, provider="uniapi", uniapi_key=sandbox.config.key, fal_key=None)
    async with connect(settings) as client:
        sub = (await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})).structured_content
        status = (await client.call_tool("get_fal_status", {"request_id": sub["request_id"]})).structured_content
        assert status["outcome"] == "pending"  # a 200 for a queued job is still a queued job
        sandbox.inject(Fault("/status", status=200, body=json.dumps({"status": "FAILURE"}).encode()))
        failed = (await client.call_tool("get_fal_status", {"request_id": sub["request_id"]})).structured_content
        assert failed["outcome"] == "failed" and "FAILURE" in failed["error"]
    # status_url/response_url pointed at queue.fal.run; every request still went to the configured base
    assert all(r.host == sandbox.base_url.removeprefix("http://") for r in sandbox.seen())


async def test_input_limits_apply_to_every_model(sandbox: Sandbox) -> None:
    settings = make_settings(sandbox, max_input_bytes=2048, max_prompt_chars=100)
    async with connect(settings) as client:
        huge = await client.call_tool("submit_fal_job", {"model": "fal-ai/new/model", "input": {"x": "y" * 5000}})
        long_prompt = await client.call_tool(
            "submit_fal_job", {"model": "fal-ai/new/model", "input": {"prompt": "p" * 101}}
        )
    assert huge.is_error and "FAL_MCP_MAX_INPUT_BYTES" in text_of(huge)
    assert long_prompt.is_error and "FAL_MCP_MAX_PROMPT_CHARS" in text_of(long_prompt)
    assert sandbox.seen() == []

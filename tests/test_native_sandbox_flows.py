"""The native Kling and Luma routes end to end against the sandbox (server/sandbox/kling.py, luma.py), in its default
dialect and in the deliberately different one (other auth scheme, Luma's own state words, 201 creates, an empty
`download_url`, ...): the same conversation works on both; and the fault cases of the fal route, on these routes:
one submit per job whatever happens to it, reads retried past transient faults, nothing lost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.app import open_runtime
from server.errors import FalError, SubmitOutcomeUnknownError
from server.sandbox import OTHER_DIALECT, Fault, NativeConfig, Sandbox, SandboxConfig
from server.settings import Settings
from tests.helpers import connect, finish_job, native_settings, text_of
from tools.follow import result
from tools.submit import submit

pytestmark = pytest.mark.anyio

T2V = "kling/v1/videos/text2video"
TRY_ON = "kling/v1/images/kolors-virtual-try-on"
LUMA = "luma/generations"
EXTEND = "luma/generations/extend"
BODIES: dict[str, dict[str, Any]] = {
    T2V: {"prompt": "a red fox in snow", "duration": "5"},
    TRY_ON: {"human_image": "https://example.com/h.png", "cloth_image": "https://example.com/c.png"},
    LUMA: {"user_prompt": "waves at dusk"},
}
DIALECTS = {"default": NativeConfig(), "other": OTHER_DIALECT}


@pytest.fixture(params=list(DIALECTS))
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(queue_seconds=0.3, run_seconds=0.6), native=DIALECTS[request.param]) as running:
        yield running


def settings_for(sandbox: Sandbox, state: Path | None = None, **overrides: Any) -> Settings:
    return native_settings(sandbox.base_url, sandbox.config.key, state, **overrides)


async def _finish(client: Any, request_id: str) -> dict[str, Any]:
    return dict((await finish_job(client, request_id)).structured_content)


async def test_one_conversation_on_either_dialect(sandbox: Sandbox) -> None:
    settings = settings_for(sandbox)
    async with connect(settings) as client:
        made: dict[str, str] = {}
        for model, body in BODIES.items():
            answer = await client.call_tool("submit_fal_job", {"model": model, "input": body})
            assert not answer.is_error, text_of(answer)
            made[model] = answer.structured_content["request_id"]
        done = {model: await _finish(client, rid) for model, rid in made.items()}
        assert done[T2V]["media"][0]["content_type"] == "video/mp4"
        assert done[TRY_ON]["media"][0]["content_type"].startswith("image/")
        assert [m["content_type"] for m in done[LUMA]["media"]] == ["video/mp4"]
        assert "download" in done[LUMA]["media"][0]["url"] or "video" in done[LUMA]["media"][0]["url"]
        extend = {"user_prompt": "the waves calm", "source_request_id": made[LUMA]}
        answer = await client.call_tool("submit_fal_job", {"model": EXTEND, "input": extend})
        assert not answer.is_error, text_of(answer)
        made[EXTEND] = answer.structured_content["request_id"]
        assert (await _finish(client, made[EXTEND]))["media"][0]["content_type"] == "video/mp4"
        saved = await client.call_tool("get_fal_result", {"request_id": made[EXTEND], "download": True})
        assert Path(saved.structured_content["downloads"][0]["path"]).stat().st_size > 0
    posts = sandbox.seen("POST")
    first_tries = 2 if sandbox.native.kling_schemes == ("Key",) else 0  # one 401 per family, then remembered
    assert len(posts) == 4 + first_tries
    assert [p.path for p in posts if p.path.endswith("/extend")] == [f"/luma/generations/{made[LUMA]}/extend"]
    async with connect(settings_for(sandbox, state=settings.state_dir)) as client:  # a restart
        listed = (await client.call_tool("list_fal_jobs", {})).structured_content
        assert {job["request_id"]: job["model"] for job in listed["jobs"]} == {rid: m for m, rid in made.items()}
        assert all(job["status"] == "completed" and job["media_urls"] for job in listed["jobs"])
    assert sandbox.config.key not in text_of(saved)


async def _submit(client: Any, model: str) -> str:
    answer = await client.call_tool("submit_fal_job", {"model": model, "input": BODIES[model]})
    assert not answer.is_error, text_of(answer)
    return str(answer.structured_content["request_id"])


# ---- faults: one submit per job, reads retried, nothing lost ------------------------------------------------------

SUBMIT_FAULTS = {
    "http500": dict(status=500),
    "reset": dict(mode="reset"),
    "drop-answer": dict(mode="drop_answer"),
    "never-answers": dict(status=504, delay=60.0),
    "html-200": dict(status=200, body=b"<html>maintenance</html>", content_type="text/html"),
}


@pytest.mark.parametrize("model", [T2V, LUMA])
@pytest.mark.parametrize("fault", list(SUBMIT_FAULTS))
async def test_a_submit_meeting_a_fault_is_sent_once_and_recorded_unknown(model: str, fault: str) -> None:
    with Sandbox(SandboxConfig(queue_seconds=0.3, run_seconds=0.6)) as sandbox:
        sandbox.inject(Fault(f"POST /{model}", **SUBMIT_FAULTS[fault]))  # type: ignore[arg-type]
        async with open_runtime(settings_for(sandbox, submit_timeout=2.0)) as rt:
            with pytest.raises(SubmitOutcomeUnknownError) as raised:
                await submit(rt, model, BODIES[model])
            rows = await rt.jobs.list(state=None, endpoint_id=model, since=None, limit=5)
        assert [row.state for row in rows] == ["unknown"] and "not" in raised.value.message
        assert len(sandbox.seen("POST")) == 1


@pytest.mark.parametrize("model", [T2V, LUMA])
@pytest.mark.parametrize(
    "fault", [dict(status=503), dict(status=502), dict(mode="reset"), dict(status=429, headers={"Retry-After": "1"})]
)
async def test_reads_are_retried_past_transient_faults_and_nothing_is_resubmitted(
    model: str, fault: dict[str, Any]
) -> None:
    with Sandbox(SandboxConfig(queue_seconds=0.3, run_seconds=0.6)) as sandbox:
        async with connect(settings_for(sandbox)) as client:
            rid = await _submit(client, model)
            sandbox.inject(Fault(f"GET /{model.split('/')[0]}", times=2, **fault))
            status = await client.call_tool("get_fal_status", {"request_id": rid})
            assert not status.is_error, text_of(status)
            sandbox.inject(Fault(f"GET /{model.split('/')[0]}", times=2, **fault))
            done = await _finish(client, rid)
            assert done["media"]
        assert len(sandbox.seen("POST")) == 1 and sandbox.faults == []


@pytest.mark.parametrize("model", [T2V, LUMA])
async def test_a_persistent_read_fault_is_a_sentence_and_the_job_is_still_there(model: str) -> None:
    with Sandbox(SandboxConfig(queue_seconds=0.3, run_seconds=0.6)) as sandbox:
        async with connect(settings_for(sandbox, retry_deadline=1.0)) as client:
            rid = await _submit(client, model)
            sandbox.inject(Fault(f"GET /{model.split('/')[0]}", status=503, times=1000))
            status = await client.call_tool("get_fal_status", {"request_id": rid})
            assert status.is_error and "try again" in text_of(status)
            sandbox.faults.clear()
            assert (await _finish(client, rid))["media"]
        assert len(sandbox.seen("POST")) == 1


async def test_fal_errors_name_no_key_on_native_routes() -> None:
    """A failed native job's reason is quoted, and the key is not (the sandbox fails on its marker)."""
    with Sandbox(SandboxConfig(queue_seconds=0.1, run_seconds=0.2)) as sandbox:
        async with open_runtime(settings_for(sandbox)) as rt:
            for model, body in [(T2V, {"prompt": "[sandbox:fail]"}), (LUMA, {"user_prompt": "[sandbox:fail]"})]:
                receipt = await submit(rt, model, body)
                with pytest.raises(FalError) as failed:
                    await result(rt, receipt.request_id, None, wait_seconds=10)
                assert "failed" in failed.value.message and sandbox.config.key not in failed.value.message


async def test_sandbox_mode_serves_every_route_family(tmp_path: Path) -> None:
    """`--sandbox` speaks all three families, so it is configured as UniAPI (with the sandbox's key for storage)."""
    from server.cli import sandbox_settings

    with Sandbox(SandboxConfig(queue_seconds=0.1, run_seconds=0.2)) as sandbox:
        settings = sandbox_settings(sandbox, tmp_path).model_copy(update={"watch_jobs": False})
        async with connect(settings) as client:
            for model in (T2V, LUMA, "fal-ai/kling-video/v2.1/standard/image-to-video"):
                body = BODIES.get(model, {"prompt": "p", "image_url": "https://example.com/i.png"})
                answer = await client.call_tool("submit_fal_job", {"model": model, "input": body})
                assert not answer.is_error, text_of(answer)

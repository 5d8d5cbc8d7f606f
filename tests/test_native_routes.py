"""UniAPI's native Kling and Luma routes through the whole server: model ids pick the route family, states and results
map onto the same answers as on the fal route, the provider and extend rules refuse before anything is sent, the
auth scheme falls back once and is remembered, and the key never surfaces. The upstream is tests/native_fake.py."""

from __future__ import annotations

import hashlib
import logging
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from server.app import open_runtime
from server.errors import CancelUnsupportedError, InvalidRequestError
from server.jobs.watcher import Watcher
from server.settings import Settings
from server.upstream import kling, luma
from server.upstream.ids import InvalidIdError, normalize_model_id, route_family_of, validate_request_id
from tests.helpers import clean_env, connect, finish_job, native_settings, text_of
from tests.native_fake import KEY, NativeFake, native_fake
from tests.stdio_session import StdioSession
from tools.submit import submit

pytestmark = pytest.mark.anyio

T2V = "kling/v1/videos/text2video"
TRY_ON = "kling/v1/images/kolors-virtual-try-on"
LUMA = "luma/generations"
EXTEND = "luma/generations/extend"


@pytest.fixture
def fake() -> Iterator[NativeFake]:
    with native_fake() as running:
        yield running


def uniapi_settings(fake: NativeFake, state: Path | None = None, **overrides: Any) -> Settings:
    return native_settings(fake.base_url, KEY, state, **overrides)


# ---- model ids ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "family", "normalised"),
    [
        (T2V, "kling", T2V),
        ("kling/v1/videos/image2video", "kling", "kling/v1/videos/image2video"),
        ("kling/v1/images/generations", "kling", "kling/v1/images/generations"),
        (TRY_ON, "kling", TRY_ON),
        (LUMA, "luma", LUMA),
        (EXTEND, "luma", EXTEND),
        ("kling-video/v2.1/standard/image-to-video", "fal", "fal-ai/kling-video/v2.1/standard/image-to-video"),
        ("fal-ai/kling/v1/videos/text2video", "fal", "fal-ai/kling/v1/videos/text2video"),
        ("luma-dream-machine", "fal", "fal-ai/luma-dream-machine"),
    ],
)
def test_a_model_id_is_the_path_after_the_base_url(model: str, family: str, normalised: str) -> None:
    assert normalize_model_id(model) == normalised
    assert route_family_of(normalised) == family


@pytest.mark.parametrize(
    "model",
    ["kling/v2/videos/text2video", "kling/v1/videos", "kling/v1/videos/text2video/123", "luma/generations/x/extend",
     "luma/extend", "luma"],
)  # fmt: skip
def test_a_path_that_is_no_native_route_is_refused_naming_the_routes(model: str) -> None:
    with pytest.raises(InvalidIdError, match="luma/generations/extend"):
        normalize_model_id(model)


@pytest.mark.parametrize("request_id", ["831922345719271433", "4f3a2b1c-0d9e-4f8a-b7c6-5d4e3f2a1b0c"])
def test_request_ids_of_both_kinds_are_accepted(request_id: str) -> None:
    assert validate_request_id(request_id) == request_id


# ---- states and results, from the routes' JSON shapes -----------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "state"), [("submitted", "IN_QUEUE"), ("processing", "IN_PROGRESS"), ("succeed", "COMPLETED")]
)
def test_kling_states_map_onto_the_fal_states(word: str, state: str) -> None:
    report = kling.parse_task({"task_id": "1", "task_status": word})
    assert (report.state, report.failed) == (state, False)


def test_a_failed_kling_task_is_a_completed_job_with_the_upstream_s_reason() -> None:
    report = kling.parse_task({"task_status": "failed", "task_status_msg": "Failure to pass the risk control system"})
    assert report.state == "COMPLETED" and report.error == "Failure to pass the risk control system"


@pytest.mark.parametrize(
    ("word", "state"),
    [("pending", "IN_QUEUE"), ("queued", "IN_QUEUE"), ("processing", "IN_PROGRESS"), ("dreaming", "IN_PROGRESS"),
     ("completed", "COMPLETED")],
)  # fmt: skip
def test_luma_states_of_both_spellings_map_onto_the_fal_states(word: str, state: str) -> None:
    report = luma.parse_generation({"id": "g", "state": word})
    assert (report.state, report.failed) == (state, False)


@pytest.mark.parametrize(
    ("generation", "reason"),
    [
        ({"state": "failed", "failure_reason": "400: prompt not allowed"}, "400: prompt not allowed"),
        ({"state": "failed", "detail": {"reason": "quota", "code": 7}}, "quota"),
    ],
)
def test_a_failed_luma_generation_carries_the_upstream_s_reason(generation: dict[str, Any], reason: str) -> None:
    report = luma.parse_generation(generation)
    assert report.state == "COMPLETED" and report.error is not None and reason in report.error


def test_an_unknown_state_is_still_running_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert kling.parse_task({"task_status": "rendering-2027"}).state == "IN_PROGRESS"
            assert luma.parse_generation({"state": "upscaling-2027"}).state == "IN_PROGRESS"
    assert sum("rendering-2027" in r.getMessage() for r in caplog.records) == 1
    assert sum("upscaling-2027" in r.getMessage() for r in caplog.records) == 1


def test_kling_results_carry_mime_types() -> None:
    videos = kling.task_output({"task_id": "1", "task_result": {"videos": [{"url": "https://cdn/x", "duration": "5"}]}})
    images = kling.task_output({"task_result": {"images": [{"index": 0, "url": "https://cdn/a.jpg"}]}})
    assert videos["videos"][0]["content_type"] == "video/mp4"
    assert images["images"][0]["content_type"] == "image/jpeg"


def test_luma_results_prefer_the_no_watermark_link() -> None:
    generation = {"id": "g", "state": "completed", "video": {"url": "https://cdn/w.mp4", "download_url": ""}}
    assert luma.generation_output(generation, None)["video"]["url"] == "https://cdn/w.mp4"
    clean = luma.generation_output(generation, "https://cdn/clean.mp4")["video"]
    assert clean == {
        "url": "https://cdn/clean.mp4",
        "content_type": "video/mp4",
        "watermarked_url": "https://cdn/w.mp4",
    }


def test_an_extend_names_its_source_in_the_path_not_in_the_body() -> None:
    source = "4f3a2b1c-0d9e-4f8a-b7c6-5d4e3f2a1b0c"
    path, body = luma.submit_route(EXTEND, {"user_prompt": "on", "source_request_id": source})
    assert (path, body) == (f"luma/generations/{source}/extend", {"user_prompt": "on"})


# ---- the whole server, in one conversation ------------------------------------------------------------------------


async def _finish(client: Any, request_id: str) -> dict[str, Any]:
    result = await finish_job(client, request_id)
    return {"structured": result.structured_content, "content": result.content}


async def test_a_uniapi_user_makes_kling_and_luma_jobs_extends_one_and_finds_them_after_a_restart(
    fake: NativeFake,
) -> None:
    settings = uniapi_settings(fake)
    async with connect(settings) as client:
        made = {}
        for model, body in [
            (T2V, {"prompt": "a red fox in snow", "duration": "5"}),
            (TRY_ON, {"human_image": "https://example.com/h.png", "cloth_image": "https://example.com/c.png"}),
            (LUMA, {"user_prompt": "waves at dusk", "aspect_ratio": "16:9"}),
        ]:
            submitted = await client.call_tool("submit_fal_job", {"model": model, "input": body})
            assert not submitted.is_error, text_of(submitted)
            assert submitted.structured_content["model"] == model
            made[model] = submitted.structured_content["request_id"]
        assert made[T2V].isdecimal() and len(made[LUMA]) == 36

        status = await client.call_tool("get_fal_status", {"request_id": made[T2V]})
        assert status.structured_content["status"] == "IN_QUEUE" and status.structured_content["outcome"] == "pending"

        done = {model: await _finish(client, rid) for model, rid in made.items()}
        video = done[T2V]["structured"]["media"][0]
        assert video["content_type"] == "video/mp4" and video["url"].endswith("/media/out")
        assert done[TRY_ON]["structured"]["media"][0]["content_type"] == "image/png"
        luma_media = done[LUMA]["structured"]["media"]
        assert [m["url"].endswith("-clean.mp4") for m in luma_media] == [True]  # the no-watermark link, only it
        links = [block for block in done[LUMA]["content"] if block.type == "resource_link"]
        assert [(link.mime_type, str(link.uri)) for link in links] == [("video/mp4", luma_media[0]["url"])]

        extend_body = {"user_prompt": "the waves calm", "source_request_id": made[LUMA]}
        extended = await client.call_tool("submit_fal_job", {"model": EXTEND, "input": extend_body})
        assert not extended.is_error, text_of(extended)
        made[EXTEND] = extended.structured_content["request_id"]
        assert fake.jobs[made[EXTEND]].source == made[LUMA]
        assert fake.jobs[made[EXTEND]].body == {"user_prompt": "the waves calm"}
        assert (await _finish(client, made[EXTEND]))["structured"]["media"][0]["content_type"] == "video/mp4"

        saved = await client.call_tool("get_fal_result", {"request_id": made[T2V], "download": True})
        download = saved.structured_content["downloads"][0]
        assert (
            Path(download["path"]).read_bytes()
            and download["sha256"] == hashlib.sha256(Path(download["path"]).read_bytes()).hexdigest()
        )

        cancelled = await client.call_tool("cancel_fal_job", {"request_id": made[LUMA]})
        assert cancelled.is_error and "no cancel" in text_of(cancelled)
    assert fake.count("POST") == 4  # one submit per job
    assert not any("cancel" in path for _, path, _ in fake.sent)
    assert {scheme for _, _, scheme in fake.sent if scheme} == {"Bearer"}

    sent = len(fake.sent)
    async with connect(uniapi_settings(fake, state=settings.state_dir)) as client:  # a restart: the same ledger
        listed = await client.call_tool("list_fal_jobs", {})
        jobs = {job["request_id"]: job for job in listed.structured_content["jobs"]}
        assert set(jobs) == set(made.values())
        assert {jobs[rid]["model"] for rid in made.values()} == set(made)
        assert all(jobs[rid]["status"] == "completed" and jobs[rid]["media_urls"] for rid in made.values())
        again = await client.call_tool("get_fal_result", {"request_id": made[TRY_ON]})
        assert again.structured_content["done"] and again.structured_content["media"][0]["content_type"] == "image/png"
    assert len(fake.sent) == sent  # kept results are served from the ledger


async def test_a_failed_task_is_an_error_with_the_upstream_s_reason_and_no_key(fake: NativeFake) -> None:
    async with connect(uniapi_settings(fake)) as client:
        for model, body, reason in [
            (T2V, {"prompt": "please fail"}, "Failure to pass the risk control system"),
            (T2V, {"prompt": "fail and echo-key"}, "risk control"),
            (LUMA, {"user_prompt": "fail now"}, "prompt not allowed"),
        ]:
            submitted = await client.call_tool("submit_fal_job", {"model": model, "input": body})
            rid = submitted.structured_content["request_id"]
            answer = await client.call_tool("get_fal_result", {"request_id": rid, "wait_seconds": 20})
            assert answer.is_error and reason in text_of(answer), text_of(answer)
            assert KEY not in text_of(answer)
            status = await client.call_tool("get_fal_status", {"request_id": rid})
            assert status.structured_content["outcome"] == "failed" and KEY not in text_of(status)


# ---- refused before anything is sent ------------------------------------------------------------------------------


async def test_a_native_model_with_fal_direct_is_refused_saying_why_and_nothing_is_sent(fake: NativeFake) -> None:
    fal_only = uniapi_settings(fake, provider="fal", uniapi_key=None, fal_key=KEY)
    async with connect(fal_only) as client:
        for model in (T2V, LUMA):
            answer = await client.call_tool("submit_fal_job", {"model": model, "input": {"prompt": "p"}})
            assert answer.is_error and "only through UniAPI" in text_of(answer), text_of(answer)
        status = await client.call_tool("get_fal_status", {"request_id": "831922345719271433", "model": T2V})
        assert status.is_error and "only through UniAPI" in text_of(status)
        listed = await client.call_tool("list_fal_jobs", {})
        assert listed.structured_content["count"] == 0  # not even recorded
    assert fake.sent == []


async def test_an_extend_of_an_unknown_foreign_or_unfinished_job_is_refused_and_nothing_is_sent(
    fake: NativeFake,
) -> None:
    async with connect(uniapi_settings(fake)) as client:
        kling_job = await client.call_tool("submit_fal_job", {"model": T2V, "input": {"prompt": "p"}})
        luma_job = await client.call_tool("submit_fal_job", {"model": LUMA, "input": {"user_prompt": "p"}})
        sent = len(fake.sent)
        cases = [
            ({"user_prompt": "on"}, "source_request_id"),
            ({"user_prompt": "on", "source_request_id": "../x"}, "source_request_id"),
            ({"user_prompt": "on", "source_request_id": "4f3a2b1c-0d9e-4f8a-b7c6-5d4e3f2a1b0c"}, "No job with request"),
            ({"user_prompt": "on", "source_request_id": kling_job.structured_content["request_id"]}, "not on Luma"),
            ({"user_prompt": "on", "source_request_id": luma_job.structured_content["request_id"]}, "not finished"),
        ]
        for body, said in cases:
            answer = await client.call_tool("submit_fal_job", {"model": EXTEND, "input": body})
            text = text_of(answer)
            assert answer.is_error and said in text and "nothing was submitted" in text.lower(), text
    assert len(fake.sent) == sent


async def test_cancel_says_plainly_there_is_none_and_sends_nothing(fake: NativeFake) -> None:
    async with open_runtime(uniapi_settings(fake)) as rt:
        for model in (T2V, LUMA):
            with pytest.raises(CancelUnsupportedError, match="no cancel, so nothing was sent"):
                await rt.upstream.cancel(model, "831922345719271433")
    assert fake.sent == []


# ---- auth scheme ---------------------------------------------------------------------------------------------------


async def test_a_401_is_tried_once_with_the_other_scheme_and_the_scheme_that_worked_is_kept() -> None:
    with native_fake(scheme="Key") as fake:
        async with open_runtime(uniapi_settings(fake)) as rt:
            receipt = await submit(rt, T2V, {"prompt": "p"})
            assert [(m, s) for m, _, s in fake.sent] == [("POST", "Bearer"), ("POST", "Key")]
            await rt.upstream.status(T2V, receipt.request_id)
            assert fake.sent[-1][2] == "Key" and len(fake.sent) == 3  # remembered: no second 401
            assert rt.upstream.client.schemes["kling"] == "Key"
            assert rt.upstream.client.schemes["luma"] == "Bearer"  # per family


async def test_a_401_with_both_schemes_is_a_refusal_sent_twice_at_most() -> None:
    with native_fake(scheme="Basic") as fake:
        async with open_runtime(uniapi_settings(fake)) as rt:
            with pytest.raises(Exception, match="rejected the API key"):
                await submit(rt, LUMA, {"user_prompt": "p"})
            rows = await rt.jobs.list(state=None, endpoint_id=LUMA, since=None, limit=5)
    assert fake.count("POST") == 2 and [row.state for row in rows] == ["rejected"]


# ---- the watcher keeps a native job's result ----------------------------------------------------------------------


async def test_the_watcher_keeps_a_native_result_without_anyone_asking(fake: NativeFake) -> None:
    async with open_runtime(uniapi_settings(fake, watch_first_interval=0.01)) as rt:
        receipt = await submit(rt, LUMA, {"user_prompt": "p"})
        watcher = Watcher(rt.jobs, lambda: rt.upstream, rt.settings)
        checks = 0
        for _ in range(500):  # a bound, not a timing: the job completes on its third check
            checks += await watcher.round()
            row = await rt.jobs.get(receipt.request_id)
            if (row is not None and row.state == "completed") or checks >= 6:
                break
            watcher._next.clear()  # due again at once: the schedule is tested elsewhere
            await anyio.sleep(0.02)
        assert row is not None and row.state == "completed" and row.media_urls[0].endswith("-clean.mp4")
        assert (row.endpoint_id, row.route_family) == (LUMA, "luma")  # the ledger records route and family


async def test_request_ids_are_checked_before_a_native_route_is_asked(fake: NativeFake) -> None:
    async with open_runtime(uniapi_settings(fake)) as rt:
        for bad in ("../x", "a/b", "1?x=2"):
            with pytest.raises(InvalidIdError):
                await rt.upstream.status(T2V, bad)
        with pytest.raises(InvalidRequestError):
            await rt.upstream.submit(EXTEND, {"user_prompt": "p"})
    assert fake.sent == []


# ---- across a SIGKILL, in real server processes ------------------------------------------------------------------


def test_native_jobs_survive_a_sigkill_and_the_key_never_surfaces(fake: NativeFake, tmp_path: Path) -> None:
    env = clean_env(
        UNIAPI_KEY=KEY,
        FAL_MCP_BASE_URL=fake.base_url,
        FAL_MCP_STATE_DIR=str(tmp_path),
        FAL_MCP_WATCH_JOBS="false",
        FAL_MCP_POLL_FIRST_INTERVAL="0.2",
        FAL_MCP_LOG_LEVEL="DEBUG",
    )
    first = StdioSession(env)
    try:
        first.initialize("before")
        made = {
            model: first.call("submit_fal_job", {"model": model, "input": body})["result"]["structuredContent"]
            for model, body in [(T2V, {"prompt": "a fox"}), (LUMA, {"user_prompt": "waves"})]
        }
    finally:
        first.process.send_signal(signal.SIGKILL)
        killed = first.finish()
    assert killed.code == -signal.SIGKILL
    second = StdioSession(env)
    try:
        second.initialize("after")
        for model, submitted in made.items():
            request_id = submitted["request_id"]
            for _ in range(10):
                answer = second.call("get_fal_result", {"request_id": request_id, "wait_seconds": 20})["result"]
                assert not answer.get("isError"), answer
                if answer["structuredContent"]["done"]:
                    break
            assert answer["structuredContent"]["model"] == model and answer["structuredContent"]["media"]
        listed = second.call("list_fal_jobs", {})["result"]["structuredContent"]
    finally:
        finished = second.finish()
    assert {job["request_id"] for job in listed["jobs"]} == {s["request_id"] for s in made.values()}
    assert fake.count("POST") == 2
    for output in (killed.stdout, killed.stderr, finished.stdout, finished.stderr):
        assert KEY not in output


async def test_a_key_echoed_back_as_the_task_id_is_not_kept(fake: NativeFake) -> None:
    async with connect(uniapi_settings(fake)) as client:
        for model, body in [(T2V, {"prompt": "echo-key-id"}), (LUMA, {"user_prompt": "echo-key-id"})]:
            answer = await client.call_tool("submit_fal_job", {"model": model, "input": body})
            assert answer.is_error and "cannot be tracked" in text_of(answer) and KEY not in text_of(answer)
        listed = await client.call_tool("list_fal_jobs", {})
        assert [job["status"] for job in listed.structured_content["jobs"]] == ["unknown", "unknown"]
        assert KEY not in text_of(listed)

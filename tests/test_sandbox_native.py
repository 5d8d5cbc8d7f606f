"""Contract tests of the sandbox's native Kling and Luma routes, over real HTTP on 127.0.0.1, against two fakes:
the sandbox's default dialect and `OTHER_DIALECT`, which differs from it wherever the published sources do (Luma's
`queued/dreaming` states, Kling images as `{id, url}`, 201 against 200, ms against ISO times, `Key` against
`Bearer`, error details as objects, an empty `download_url`).

Each test reads the answers the way a tolerant client must (tests/data/native-routes.json lists the facts and
every variant seen), so both fakes pass the same checks; the dialect-exact checks prove the two really differ.
Jobs are moved along by shifting their clock (queue and run last an hour each), never by waiting.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.sandbox import FAIL_MARKER, OTHER_DIALECT, Fault, NativeConfig, Sandbox, SandboxConfig

FACTS = json.loads((Path(__file__).parent / "data" / "native-routes.json").read_text())
KLING, LUMA = FACTS["kling"], FACTS["luma"]
KEY = "native-key-0123456789"
HOUR = 3600.0
DIALECTS = {"relay": NativeConfig(), "other": OTHER_DIALECT}


@pytest.fixture(scope="module", params=sorted(DIALECTS))
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(queue_seconds=HOUR, run_seconds=HOUR, key=KEY), native=DIALECTS[request.param]) as s:
        yield s


@pytest.fixture
def kling(sandbox: Sandbox) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"{sandbox.native.kling_schemes[0]} {KEY}"}
    with httpx.Client(base_url=sandbox.base_url, headers=headers) as client:
        yield client


@pytest.fixture
def luma(sandbox: Sandbox) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"{sandbox.native.luma_schemes[0]} {KEY}"}
    with httpx.Client(base_url=sandbox.base_url, headers=headers) as client:
        yield client


def move(sandbox: Sandbox, job_id: str, stage: str) -> None:
    """Shift a queued job's clock so that it is `running` or `done` now (a job read from the book is stored back)."""
    if stage == "done":
        sandbox.finish_now(job_id)
    else:
        job = sandbox.jobs[job_id]
        job.submitted_at -= sandbox.config.queue_seconds + 1
        sandbox.jobs[job_id] = job


# ---- the tolerant reading a client must do ---------------------------------------------------------------


def seconds(value: Any) -> float:
    """A time as either dialect writes it: epoch milliseconds or ISO 8601."""
    if isinstance(value, int):
        assert value > 10**12, f"{value} is not in milliseconds"
        return value / 1000
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def kling_data(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(KLING["envelope"]) <= set(body)
    assert body["code"] == KLING["success_code"]
    data: dict[str, Any] = body["data"]
    assert abs(seconds(data["created_at"]) - time.time()) < HOUR  # a time, in either unit, near now
    assert seconds(data["updated_at"]) >= seconds(data["created_at"])
    return data


def kling_error(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert set(KLING["error_body"]) <= set(body) and body["code"] != KLING["success_code"]
    assert isinstance(body["message"], str) and body["message"]
    return body


def luma_kind(state: str) -> str:
    if state == LUMA["succeeded"]:
        return "succeeded"
    return "failed" if state == LUMA["failed"] else "running"  # unknown states are still running


def luma_generation(answer: httpx.Response, statuses: tuple[int, ...] = (200,)) -> dict[str, Any]:
    assert answer.status_code in statuses, answer.text
    generation: dict[str, Any] = answer.json()
    assert set(LUMA["generation"]) <= set(generation)
    assert uuid.UUID(generation["id"]).version == 4
    assert abs(seconds(generation["created_at"]) - time.time()) < HOUR
    return generation


def luma_detail(answer: httpx.Response, status: int) -> str:
    assert answer.status_code == status, answer.text
    detail = answer.json()["detail"]
    text = detail if isinstance(detail, str) else detail["reason"]
    assert isinstance(text, str) and text
    return text


def fetched(url: str, base_url: str) -> httpx.Response:
    assert url.startswith(base_url + "/"), url  # the sandbox's own media, never a host outside 127.0.0.1
    answer = httpx.get(url)
    assert answer.status_code == 200
    return answer


def assert_playable_mp4(url: str, base_url: str) -> None:
    answer = fetched(url, base_url)
    assert answer.headers["content-type"] == "video/mp4"
    assert answer.content[4:8] == b"ftyp" and b"moov" in answer.content and b"avc1" in answer.content


def assert_png(url: str, base_url: str) -> None:
    answer = fetched(url, base_url)
    assert answer.headers["content-type"] == "image/png"
    assert answer.content.startswith(b"\x89PNG\r\n\x1a\n")


# ---- Kling ------------------------------------------------------------------------------------------------


def test_kling_text_to_video_moves_submitted_processing_succeed_and_serves_a_playable_mp4(
    sandbox: Sandbox, kling: httpx.Client
) -> None:
    route = KLING["routes"]["text2video"]
    body = {"prompt": "a cat surfing", "duration": "10", "external_task_id": "mine-1"}
    created = kling_data(kling.post(route, json=body))
    assert set(KLING["create_data"]) <= set(created)
    assert created["task_status"] == KLING["create_status_word"]
    assert re.fullmatch(r"\d{15,}", created["task_id"])  # a long decimal string
    assert created["task_info"] == {"external_task_id": "mine-1"}
    task = created["task_id"]

    seen = []
    for stage in ("queued", "running", "done"):
        if stage != "queued":
            move(sandbox, task, stage)
        data = kling_data(kling.get(f"{route}/{task}"))
        assert set(KLING["status_data"]) <= set(data)
        seen.append(data["task_status"])
        if data["task_status"] in KLING["states"]["running"]:
            assert data["task_result"] is None
    assert seen == [*KLING["states"]["running"], KLING["states"]["succeeded"]]
    assert seconds(data["updated_at"]) > seconds(data["created_at"])
    (video,) = data["task_result"]["videos"]
    assert set(KLING["video_entry"]) <= set(video)
    assert video["duration"] == "10"  # a string, as sent
    assert_playable_mp4(video["url"], sandbox.base_url)

    # the dialect's own spelling of the times
    expected_type = int if sandbox.native.kling_times == "ms" else str
    assert type(data["created_at"]) is expected_type


def test_kling_image_to_video_needs_a_first_or_last_frame(sandbox: Sandbox, kling: httpx.Client) -> None:
    route = KLING["routes"]["image2video"]
    refused = kling_error(kling.post(route, json={"prompt": "zoom in"}), 400)
    assert "image" in refused["message"]
    for frame in ("image", "image_tail"):
        task = kling_data(kling.post(route, json={frame: "https://example.com/cat.png"}))["task_id"]
        move(sandbox, task, "done")
        (video,) = kling_data(kling.get(f"{route}/{task}"))["task_result"]["videos"]
        assert video["duration"] == "5"  # the default, a string
        assert_playable_mp4(video["url"], sandbox.base_url)


def test_kling_images_answer_n_pictures_in_the_dialects_shape(sandbox: Sandbox, kling: httpx.Client) -> None:
    route = KLING["routes"]["images"]
    task = kling_data(kling.post(route, json={"prompt": "a red fox", "n": 3}))["task_id"]
    move(sandbox, task, "done")
    images = kling_data(kling.get(f"{route}/{task}"))["task_result"]["images"]
    assert len(images) == 3
    for image in images:
        assert sorted(image) in [sorted(variant) for variant in KLING["image_entry_variants"]]
        assert_png(image["url"], sandbox.base_url)
    assert len({image["url"] for image in images}) == 3
    key = sandbox.native.kling_image_key
    assert all(key in image for image in images)
    if key == "index":
        assert [image["index"] for image in images] == [0, 1, 2]


def test_kling_try_on_needs_the_person_and_the_cloth(sandbox: Sandbox, kling: httpx.Client) -> None:
    route = KLING["routes"]["try_on"]
    refused = kling_error(kling.post(route, json={"human_image": "https://example.com/me.png"}), 400)
    assert "cloth_image" in refused["message"] and "human_image" not in refused["message"]
    body = {"human_image": "https://example.com/me.png", "cloth_image": "https://example.com/shirt.png"}
    task = kling_data(kling.post(route, json=body))["task_id"]
    move(sandbox, task, "done")
    (image,) = kling_data(kling.get(f"{route}/{task}"))["task_result"]["images"]
    assert_png(image["url"], sandbox.base_url)


@pytest.mark.parametrize(
    ("route", "body", "words"),
    [
        ("text2video", {}, "prompt"),
        ("text2video", {"prompt": " "}, "prompt"),
        ("text2video", {"prompt": "x" * 2501}, "2500"),
        ("text2video", {"prompt": "a cat", "duration": 5}, "string"),
        ("images", {"prompt": "a fox", "n": 10}, "n must"),
        ("images", {"negative_prompt": "blur"}, "prompt"),
    ],
)
def test_kling_refuses_a_bad_body_in_its_envelope(
    sandbox: Sandbox, kling: httpx.Client, route: str, body: dict[str, Any], words: str
) -> None:
    before = len(sandbox.jobs)
    refused = kling_error(kling.post(KLING["routes"][route], json=body), 400)
    assert refused["code"] == 1201 and words in refused["message"]
    not_json = kling_error(kling.post(KLING["routes"][route], content=b"[1, 2"), 400)
    assert not_json["code"] == 1200
    assert len(sandbox.jobs) == before  # nothing was accepted


def test_kling_failed_task_is_http_200_with_its_reason(sandbox: Sandbox, kling: httpx.Client) -> None:
    route = KLING["routes"]["text2video"]
    task = kling_data(kling.post(route, json={"prompt": f"a cat {FAIL_MARKER}"}))["task_id"]
    move(sandbox, task, "done")
    data = kling_data(kling.get(f"{route}/{task}"))  # HTTP 200, code 0
    assert data["task_status"] == KLING["states"]["failed"]
    assert data["task_status_msg"] and data["task_result"] is None
    sandbox.fail_next.append("out of credits upstream")
    task = kling_data(kling.post(route, json={"prompt": "a dog"}))["task_id"]
    move(sandbox, task, "done")
    assert kling_data(kling.get(f"{route}/{task}"))["task_status_msg"] == "out of credits upstream"


def test_kling_refuses_a_missing_or_foreign_authorization(sandbox: Sandbox) -> None:
    route = sandbox.base_url + KLING["routes"]["text2video"]
    accepted = sandbox.native.kling_schemes[0]
    foreign = "Key" if accepted == "Bearer" else "Bearer"
    low, high = KLING["auth_error_codes"]["first"], KLING["auth_error_codes"]["last"]
    for headers, code in [
        ({}, 1001),
        ({"Authorization": f"{foreign} {KEY}"}, 1002),
        ({"Authorization": f"{accepted} wrong-key"}, 1002),
    ]:
        refused = kling_error(httpx.post(route, json={"prompt": "a cat"}, headers=headers), 401)
        assert refused["code"] == code and low <= code <= high
    assert httpx.post(route, json={"prompt": "a cat"}, headers={"Authorization": f"{accepted.lower()} {KEY}"})
    task_route = f"{route}/123456789012345678"
    assert kling_error(httpx.get(task_route, headers={"Authorization": f"{foreign} {KEY}"}), 401)["code"] == 1002


def test_kling_unknown_task_or_another_actions_route_is_404(sandbox: Sandbox, kling: httpx.Client) -> None:
    task = kling_data(kling.post(KLING["routes"]["text2video"], json={"prompt": "a cat"}))["task_id"]
    assert kling_error(kling.get(f"{KLING['routes']['image2video']}/{task}"), 404)["code"] == 1203
    assert kling_error(kling.get(f"{KLING['routes']['text2video']}/123456789012345678"), 404)["code"] == 1203
    sandbox.expire(task)
    kling_error(kling.get(f"{KLING['routes']['text2video']}/{task}"), 404)


# ---- Luma -------------------------------------------------------------------------------------------------


def test_luma_generation_moves_through_its_states_and_serves_playable_media(
    sandbox: Sandbox, luma: httpx.Client
) -> None:
    statuses = tuple(LUMA["create_statuses"])
    created = luma_generation(luma.post(LUMA["routes"]["generate"], json={"user_prompt": "waves"}), statuses)
    assert created["prompt"] == "waves" and created["video"] is None
    states = [created["state"]]
    for stage in ("running", "done"):
        move(sandbox, created["id"], stage)
        generation = luma_generation(luma.get(f"{LUMA['routes']['generate']}/{created['id']}"))
        states.append(generation["state"])
    assert [luma_kind(state) for state in states] == ["running", "running", "succeeded"]
    assert states[:2] in [variant[:2] for variant in LUMA["state_variants"].values()]
    video = generation["video"]
    assert set(LUMA["video"]) <= set(video) and (video["width"], video["height"]) == (96, 64)
    assert_playable_mp4(video["url"], sandbox.base_url)
    assert_playable_mp4(generation["video_raw"]["url"], sandbox.base_url)
    for picture in ("thumbnail", "last_frame"):
        assert set(LUMA["picture"]) <= set(generation[picture])
        assert_png(generation[picture]["url"], sandbox.base_url)

    # the dialect's own words, status and spellings
    native = sandbox.native
    assert states == LUMA["state_variants"][native.luma_states][:3]
    assert luma.post(LUMA["routes"]["generate"], json={"user_prompt": "x"}).status_code == native.luma_create_status
    assert type(created["created_at"]) is (str if native.luma_times == "iso" else int)
    if native.luma_download_url == "empty":
        assert video["download_url"] == ""
    else:
        assert_playable_mp4(video["download_url"], sandbox.base_url)


def test_luma_download_url_is_an_error_until_completed(sandbox: Sandbox, luma: httpx.Client) -> None:
    statuses = tuple(LUMA["create_statuses"])
    generation = luma_generation(luma.post(LUMA["routes"]["generate"], json={"user_prompt": "rain"}), statuses)
    route = LUMA["routes"]["download_url"].format(id=generation["id"])
    assert "completed" in luma_detail(luma.get(route), 400)
    move(sandbox, generation["id"], "done")
    answer = luma.get(route)
    assert answer.status_code == 200 and sorted(answer.json()) == LUMA["download_url_answer"]
    assert_playable_mp4(answer.json()["url"], sandbox.base_url)


def test_luma_extends_only_a_completed_generation(sandbox: Sandbox, luma: httpx.Client) -> None:
    statuses = tuple(LUMA["create_statuses"])
    first = luma_generation(luma.post(LUMA["routes"]["generate"], json={"user_prompt": "a road"}), statuses)
    extend = LUMA["routes"]["extend"].format(id=first["id"])
    luma_detail(luma.post(extend, json={"user_prompt": "further"}), 400)
    move(sandbox, first["id"], "done")
    luma_detail(luma.post(extend, json={}), 400)  # user_prompt is required here too
    luma_detail(luma.post(LUMA["routes"]["extend"].format(id=uuid.uuid4()), json={"user_prompt": "x"}), 404)
    second = luma_generation(luma.post(extend, json={"user_prompt": "further"}), statuses)
    assert second["id"] != first["id"] and second["prompt"] == "further"
    assert luma_kind(second["state"]) == "running"
    move(sandbox, second["id"], "done")
    done = luma_generation(luma.get(LUMA["routes"]["get"].format(id=second["id"])))
    assert luma_kind(done["state"]) == "succeeded"
    assert_playable_mp4(done["video"]["url"], sandbox.base_url)


@pytest.mark.parametrize("body", [{}, {"user_prompt": ""}, {"aspect_ratio": "16:9"}, [1]])
def test_luma_needs_a_user_prompt(sandbox: Sandbox, luma: httpx.Client, body: Any) -> None:
    before = len(sandbox.jobs)
    text = luma_detail(luma.post(LUMA["routes"]["generate"], json=body), 400)
    assert "user_prompt" in text or "JSON object" in text
    detail = luma.post(LUMA["routes"]["generate"], json=body).json()["detail"]
    assert isinstance(detail, str) == (sandbox.native.luma_errors == "text")
    assert len(sandbox.jobs) == before


def test_luma_failed_generation_says_why(sandbox: Sandbox, luma: httpx.Client) -> None:
    statuses = tuple(LUMA["create_statuses"])
    body = {"user_prompt": f"storm {FAIL_MARKER}"}
    generation = luma_generation(luma.post(LUMA["routes"]["generate"], json=body), statuses)
    move(sandbox, generation["id"], "done")
    failed = luma_generation(luma.get(LUMA["routes"]["get"].format(id=generation["id"])))
    assert luma_kind(failed["state"]) == "failed" and failed["video"] is None and failed["failure_reason"]
    luma_detail(luma.get(LUMA["routes"]["download_url"].format(id=generation["id"])), 400)


def test_luma_refuses_a_missing_or_foreign_authorization(sandbox: Sandbox) -> None:
    accepted = sandbox.native.luma_schemes[0]
    foreign = "Key" if accepted == "Bearer" else "Bearer"
    route = sandbox.base_url + LUMA["routes"]["generate"]
    for headers in ({}, {"Authorization": f"{foreign} {KEY}"}, {"Authorization": f"{accepted} wrong"}):
        luma_detail(httpx.post(route, json={"user_prompt": "x"}, headers=headers), 401)
        luma_detail(httpx.get(f"{route}/{uuid.uuid4()}", headers=headers), 401)


def test_luma_unknown_generation_is_404(luma: httpx.Client) -> None:
    luma_detail(luma.get(LUMA["routes"]["get"].format(id=uuid.uuid4())), 404)
    luma_detail(luma.get(LUMA["routes"]["download_url"].format(id=uuid.uuid4())), 404)


# ---- the two fakes, and the sandbox around them -----------------------------------------------------------


def test_the_other_dialect_differs_in_every_knob() -> None:
    for knob in fields(NativeConfig):
        assert getattr(OTHER_DIALECT, knob.name) != getattr(NativeConfig(), knob.name), knob.name


def test_the_default_dialect_is_what_the_notes_saw_most() -> None:
    default = NativeConfig()
    assert default.kling_schemes == tuple(KLING["auth_schemes_seen"])
    assert default.luma_schemes == tuple(LUMA["auth_schemes_seen"])
    assert (default.kling_times, default.kling_image_key) == ("ms", "index")
    assert (default.luma_states, default.luma_times, default.luma_create_status) == ("relay", "iso", 200)


def test_native_routes_are_recorded_take_faults_and_leave_the_fal_routes_alone(sandbox: Sandbox) -> None:
    kling_route = sandbox.base_url + KLING["routes"]["text2video"]
    bearer = {"Authorization": f"{sandbox.native.kling_schemes[0]} {KEY}"}
    sandbox.inject(Fault(match="POST /kling/v1/videos/text2video", status=429, body=b'{"code": 1102}'))
    assert httpx.post(kling_route, json={"prompt": "a cat"}, headers=bearer).status_code == 429
    assert sandbox.seen("POST")[-1].path == KLING["routes"]["text2video"]
    assert sandbox.seen("POST")[-1].authorization == bearer["Authorization"]

    # fal's queue still answers on its own routes, with fal's Key, beside the native ones
    fal = httpx.post(
        f"{sandbox.base_url}/fal-ai/kling-video/v2.1/standard/image-to-video",
        json={},
        headers={"Authorization": f"Key {KEY}"},
    )
    assert fal.status_code == 200 and fal.json()["status"] == "IN_QUEUE"
    # and a native route is never taken for a fal submit
    wrong = httpx.post(kling_route, json={"prompt": "a cat"}, headers={"Authorization": f"Key {KEY}"})
    if "Key" not in sandbox.native.kling_schemes:
        assert wrong.status_code == 401 and "status" not in wrong.json()

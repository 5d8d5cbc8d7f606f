"""The job view in a real browser: Debian's Chromium, the official MCP Apps host bridge (AppBridge), and
`fal-queue-mcp --sandbox --transport http` as a subprocess. The view runs in a sandbox page on a second origin
that applies the resource's CSP as hosts do, and plays media served by the sandbox upstream (a third origin).

Set UPDATE_SCREENSHOTS=1 to refresh docs/viewer.png from the run.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import anyio
import pytest
from mcp import Client

from server.sandbox.media import sample_mp4
from tests.browser import harness
from tests.browser.conftest import POLL_FIRST_SECONDS, POLL_MAX_SECONDS
from tests.helpers import SEED_MODEL

PROMPT = "A paper boat drifts down a rain gutter at dusk"
IMAGE_URL = "https://storage.googleapis.com/falserverless/kling/kling_input.jpeg"  # validated, never fetched
IMAGE_MODEL = "fal-ai/flux/dev"
SCREENSHOT = harness.ROOT / "docs" / "viewer.png"
ENDED = ("Done", "Failed", "Cancelled", "Error", "Not submitted")
ESTIMATE_SHOWN, COST_SHOWN = "About $0.25 (estimate)", "Cost $0.2504"  # the seed job, priced by the sandbox
# pytest -n: one worker starts Chromium and the servers once for the whole file
pytestmark = pytest.mark.xdist_group("browser")

SNAPSHOT = """() => {
  const text = (id) => document.getElementById(id).textContent;
  const bar = document.getElementById('bar');
  return {badge: text('badge'), position: text('position'), elapsed: text('elapsed'), log: text('log'),
          cost: text('cost'), bar: bar.hasAttribute('value') ? bar.value : null,
          cancel: !document.getElementById('cancel').hidden};
}"""
VIDEO = """() => { const v = document.querySelector('#media video');
  return v && {src: v.src, readyState: v.readyState, width: v.videoWidth, muted: v.muted, controls: v.controls,
               playsInline: v.playsInline, preload: v.preload, error: v.error && v.error.code}; }"""


def _open_view(page: Any, origins: dict[str, str], tool: str, args: dict[str, Any], drop: tuple[str, ...] = ()) -> Any:
    """Load the host page for one tool call; return the view's frame once the tool result was sent to it."""
    query = [("tool", tool), ("args", json.dumps(args)), ("sandbox", f"{origins['sandbox']}/sandbox.html")]
    page.goto(f"{origins['host']}/host/index.html?{urlencode(query + [('drop', d) for d in drop])}")
    page.wait_for_function("['result-sent', 'error'].includes(window.hostState.phase)", timeout=30_000)
    error = page.evaluate("window.hostState.error")
    assert error is None, error
    return _view_frame(page, origins["sandbox"])


def _view_frame(page: Any, sandbox_origin: str) -> Any:
    """The view is the only child of the sandbox frame (its URL is the sandbox page's, after document.write)."""
    for frame in page.main_frame.child_frames:
        if frame.url.startswith(sandbox_origin) and frame.child_frames:
            return frame.child_frames[0]
    raise AssertionError("no view frame")


def _sandbox_frame(page: Any) -> Any:
    return page.main_frame.child_frames[0]


def _host(page: Any) -> dict[str, Any]:
    return dict(page.evaluate("window.hostState"))


def _calls(page: Any, name: str | None = None) -> list[dict[str, Any]]:
    return [call for call in page.evaluate("window.hostState.calls") if name is None or call["name"] == name]


def _watch(view: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every distinct state the job view shows, until the job has ended."""
    seen: list[dict[str, Any]] = []

    def ended() -> bool:
        snapshot = view.evaluate(SNAPSHOT)
        if not seen or snapshot != seen[-1]:
            seen.append(snapshot)
        return snapshot["badge"] in ENDED

    harness.wait_until_true(ended, timeout, "the job to end")
    return seen


def _media_origin(host: dict[str, Any]) -> str:
    """The sandbox upstream's origin, as the server put it in the view's CSP (for both Apps and ChatGPT)."""
    meta = host["resourceMeta"]
    domains = meta["ui"]["csp"]["resourceDomains"]
    assert meta["openai/widgetCSP"]["resource_domains"] == domains
    loopback = [d for d in domains if d.startswith("http://127.0.0.1:")]
    assert len(loopback) == 1, domains
    return loopback[0]


def _size_text(size: int) -> str:
    return f"{size / 1024:.1f} KB"


def test_job_view_follows_the_job_then_plays_its_video(page: Any, origins: dict[str, str], tmp_path: Path) -> None:
    args = {"model": SEED_MODEL, "input": {"prompt": PROMPT, "image_url": IMAGE_URL}}
    view = _open_view(page, origins, "submit_fal_job", args)
    host = _host(page)
    wire = host["wire"]
    handshake = [
        "view->host ui/initialize",
        "view->host ui/notifications/initialized",
        "host->view ui/notifications/tool-input",
        "host->view ui/notifications/tool-result",
    ]
    assert [wire.index(step) for step in handshake] == sorted(wire.index(step) for step in handshake), wire
    assert host["appInfo"] == {"name": "fal-queue-job-view", "version": "0.1.0"}
    request_id = host["toolResult"]["structuredContent"]["request_id"]
    # The first frame comes from the tool call alone: model and prompt from it, the status from its answer.
    assert view.inner_text("#model") == SEED_MODEL
    assert view.inner_text("#prompt") == PROMPT

    seen = _watch(view)
    running = [s for s in seen if s["badge"] == "Running" and re.fullmatch(r"Generating: step \d of 4", s["log"])]
    assert running, seen
    assert all(re.fullmatch(r"Elapsed \d+ s", s["elapsed"]) and s["cancel"] for s in running), running
    assert any(s["bar"] is not None and 0 < s["bar"] <= 1 for s in running), running
    assert seen[-1]["badge"] == "Done", seen
    # the submit's estimate while it runs (the sandbox prices 5 s at $0.05 a second), then the bill (5.008 s)
    assert {s["cost"] for s in running} == {ESTIMATE_SHOWN}, running
    assert seen[-1]["cost"] == COST_SHOWN, seen

    video = harness.wait_until(view, f"({VIDEO})()?.readyState >= 2 && ({VIDEO})()", what="the video to load")
    media_origin = _media_origin(host)
    assert video["src"].startswith(f"{media_origin}/files/{request_id}/"), video
    assert video["width"] == 96 and video["error"] is None, video
    assert video["muted"] and video["controls"] and video["playsInline"] and video["preload"] == "auto", video
    assert _size_text(len(sample_mp4())) in view.inner_text("#media figcaption")

    # It polled through the host, never faster than the server's own first interval, and stopped at the end.
    polls = _calls(page, "get_fal_status")
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(polls)]
    assert len(polls) >= 2 and min(gaps) >= POLL_FIRST_SECONDS * 1000 * 0.9, gaps
    assert [call["name"] for call in _calls(page)][-1] == "get_fal_result"
    settled = len(_calls(page))
    page.wait_for_timeout(POLL_MAX_SECONDS * 2000)  # two polling intervals
    assert len(_calls(page)) == settled

    # "Open" goes through ui/open-link (the sandbox allows no popups).
    view.click("#media figcaption a")
    page.wait_for_function("window.hostState.openedLinks.length === 1", timeout=10_000)
    assert page.evaluate("window.hostState.openedLinks") == [video["src"]]

    shot = tmp_path / "viewer.png"
    page.locator("#app iframe").screenshot(path=str(shot))
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        shutil.copy(shot, SCREENSHOT)
    assert page.evaluate("window.hostState.teardown()") == {}


# UniAPI's native routes (issue 21): each family's own input fields, and its own output shape behind `media`
NATIVE_VIDEO_JOBS = {
    "kling": ("kling/v1/videos/text2video", {"prompt": PROMPT, "duration": "5"}),
    "luma": ("luma/generations", {"user_prompt": PROMPT, "aspect_ratio": "16:9"}),
}
TRY_ON = ("kling/v1/images/kolors-virtual-try-on", {"human_image": IMAGE_URL, "cloth_image": IMAGE_URL})


@pytest.mark.parametrize("family", sorted(NATIVE_VIDEO_JOBS))
def test_a_native_job_is_followed_then_its_video_plays(page: Any, origins: dict[str, str], family: str) -> None:
    model, job_input = NATIVE_VIDEO_JOBS[family]
    view = _open_view(page, origins, "submit_fal_job", {"model": model, "input": job_input})
    host = _host(page)
    request_id = host["toolResult"]["structuredContent"]["request_id"]
    assert view.inner_text("#model") == model
    assert view.inner_text("#prompt") == PROMPT  # Luma's `user_prompt` too

    seen = _watch(view)
    assert "Running" in {s["badge"] for s in seen} and seen[-1]["badge"] == "Done", seen
    assert seen[-1]["cost"] == "", seen  # the sandbox prices fal models only: no cost is made up

    video = harness.wait_until(view, f"({VIDEO})()?.readyState >= 2 && ({VIDEO})()", what="the video to load")
    assert video["src"].startswith(f"{_media_origin(host)}/files/{request_id}/"), video
    assert video["width"] == 96 and video["error"] is None, video
    assert video["muted"] and video["controls"] and video["playsInline"], video
    assert view.inner_text("#media figcaption .size") == "video/mp4"
    # it plays: its clock moves
    view.evaluate("document.querySelector('#media video').play()")
    harness.wait_until(view, "document.querySelector('#media video').currentTime > 0", what="the video to play")
    assert view.evaluate("document.querySelectorAll('#media video, #media img').length") == 1
    assert _sandbox_frame(page).evaluate("window.cspViolations") == []
    assert [call["name"] for call in _calls(page)][-1] == "get_fal_result"


def test_a_kling_try_on_shows_its_image(page: Any, origins: dict[str, str]) -> None:
    model, job_input = TRY_ON
    view = _open_view(page, origins, "submit_fal_job", {"model": model, "input": job_input})
    request_id = _host(page)["toolResult"]["structuredContent"]["request_id"]
    assert view.inner_text("#model") == model
    assert view.evaluate("document.getElementById('prompt').hidden")  # a try-on has no prompt

    seen = _watch(view)
    assert seen[-1]["badge"] == "Done", seen
    image = harness.wait_until(
        view,
        "(() => { const i = document.querySelector('#media img');"
        " return i && i.complete && i.naturalWidth && {src: i.src, width: i.naturalWidth}; })()",
        what="the image to load",
    )
    assert image["width"] == 64 and f"/files/{request_id}/image-0.png" in image["src"], image
    assert view.evaluate("document.querySelector('#media video')") is None
    assert view.inner_text("#media figcaption .size") == "image/png"


def test_cancel_button_cancels_the_running_job(page: Any, slow_origins: dict[str, str]) -> None:
    args = {"model": SEED_MODEL, "input": {"prompt": "Cancel me", "image_url": IMAGE_URL}}
    view = _open_view(page, slow_origins, "submit_fal_job", args)
    harness.wait_until(view, "!document.getElementById('cancel').hidden", what="the cancel button")
    view.click("#cancel")
    seen = _watch(view)
    assert seen[-1]["badge"] == "Cancelled", seen
    assert "cancelled" in view.inner_text("#error").lower()
    assert view.evaluate("document.getElementById('cancel').hidden")
    assert view.evaluate("document.querySelector('#media video')") is None
    names = [call["name"] for call in _calls(page)]
    assert names.count("cancel_fal_job") == 1, names
    # the outcome was read back from the server after the cancel, not assumed
    assert names[-1] == "get_fal_status" and names.index("cancel_fal_job") < len(names) - 1, names


def test_teardown_stops_the_polling(page: Any, origins: dict[str, str]) -> None:
    args = {"model": SEED_MODEL, "input": {"prompt": "Torn down", "image_url": IMAGE_URL}}
    _open_view(page, origins, "submit_fal_job", args)
    page.wait_for_function("window.hostState.calls.length > 0", timeout=20_000)
    assert page.evaluate("window.hostState.teardown()") == {}
    before = len(_calls(page))
    page.wait_for_timeout(POLL_MAX_SECONDS * 2000)  # two polling intervals, while the job still runs
    assert len(_calls(page)) == before


@pytest.fixture(scope="module")
def finished_jobs(origins: dict[str, str]) -> dict[str, str]:
    """A finished video job and a finished image job, made by a plain MCP client over HTTP."""

    async def make() -> dict[str, str]:
        async with Client(origins["mcp"]) as client:
            ids = {}
            for kind, model, prompt in (("video", SEED_MODEL, PROMPT), ("image", IMAGE_MODEL, "A red kite")):
                job_input = {"prompt": prompt, "image_url": IMAGE_URL} if kind == "video" else {"prompt": prompt}
                submitted = await client.call_tool("submit_fal_job", {"model": model, "input": job_input})
                ids[kind] = submitted.structured_content["request_id"]
            for request_id in ids.values():
                result = await client.call_tool("get_fal_result", {"request_id": request_id, "wait_seconds": 30})
                assert result.structured_content["done"], result
            return ids

    return _in_thread(make)


def test_gallery_lists_jobs_and_plays_a_finished_one(
    page: Any, origins: dict[str, str], finished_jobs: dict[str, str]
) -> None:
    view = _open_view(page, origins, "list_fal_jobs", {})
    assert not view.evaluate("document.getElementById('gallery').hidden")
    video_row = f'#jobs button[data-request-id="{finished_jobs["video"]}"]'
    assert view.inner_text(f"{video_row} .badge") == "Done"
    assert view.inner_text(f"{video_row} .model") == SEED_MODEL
    assert view.inner_text(f"{video_row} .when").startswith(f"{COST_SHOWN} · ")

    view.click(video_row)
    video = harness.wait_until(view, f"({VIDEO})()?.readyState >= 2 && ({VIDEO})()", what="the video to load")
    assert f"/files/{finished_jobs['video']}/" in video["src"]
    assert view.inner_text("#cost") == COST_SHOWN
    # the prompt came from fal://jobs/{request_id}, read through the host
    harness.wait_until(view, "document.getElementById('prompt').textContent !== ''", what="the prompt")
    assert view.inner_text("#prompt") == PROMPT

    view.click("#back")
    view.click(f'#jobs button[data-request-id="{finished_jobs["image"]}"]')
    size = harness.wait_until(
        view,
        "(() => { const i = document.querySelector('#media img'); return i && i.complete && i.naturalWidth; })()",
        what="the image to load",
    )
    assert size == 64
    assert _calls(page, "get_fal_status") == []  # finished jobs need no polling


def test_the_csp_decides_whether_the_video_plays(
    page: Any, origins: dict[str, str], finished_jobs: dict[str, str]
) -> None:
    args = {"request_id": finished_jobs["video"]}
    view = _open_view(page, origins, "get_fal_result", args)
    video = harness.wait_until(view, f"({VIDEO})()?.readyState >= 2 && ({VIDEO})()", what="the video to load")
    assert _sandbox_frame(page).evaluate("window.cspViolations") == []
    assert _calls(page) == []  # a finished result is drawn from the tool result alone

    # The same view with the media origin taken out of the CSP: the sandbox blocks the video.
    media_origin = _media_origin(_host(page))
    view = _open_view(page, origins, "get_fal_result", args, drop=(media_origin,))
    harness.wait_until(_sandbox_frame(page), "window.cspViolations.length > 0", what="a CSP violation")
    assert set(_sandbox_frame(page).evaluate("window.cspViolations")) == {f"media-src {video['src']}"}
    blocked = view.evaluate(VIDEO)
    assert blocked["src"] == video["src"] and blocked["readyState"] == 0, blocked
    harness.wait_until(view, "document.getElementById('notice').textContent.includes('could not be loaded')")
    assert urlsplit(video["src"]).netloc == urlsplit(media_origin).netloc


def _in_thread(work: Any) -> Any:
    """Run an async function on a thread of its own (playwright's sync API owns this thread's event loop)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = anyio.run(work)
        except BaseException as exc:  # handed to the test below
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=90)
    if "error" in box:
        raise box["error"]
    return box["value"]

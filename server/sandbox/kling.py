"""The sandbox's Kling routes: the official Kling task API under UniAPI's `/kling` prefix.

| action | create | status |
|---|---|---|
| text to video | `POST /kling/v1/videos/text2video` | `GET /kling/v1/videos/text2video/{task_id}` |
| image to video | `POST /kling/v1/videos/image2video` | `GET /kling/v1/videos/image2video/{task_id}` |
| images | `POST /kling/v1/images/generations` | `GET /kling/v1/images/generations/{task_id}` |
| try-on | `POST /kling/v1/images/kolors-virtual-try-on` | `GET /kling/v1/images/kolors-virtual-try-on/{task_id}` |

Every answer is `{code, message, request_id, data}` (code 0: success). A create answers HTTP 200 with
`data = {task_id (a long decimal string), task_status: "submitted", task_info: {external_task_id}, created_at,
updated_at}`; a status answer adds `task_status_msg` and `task_result`, null until `succeed`, then
`{videos: [{id, url, duration}]}` or `{images: [{index, url}]}`. `task_status` moves `submitted -> processing ->
succeed | failed` by the sandbox's clock; a failed task is HTTP 200 with its reason in `task_status_msg`.

Errors are the HTTP status plus `{code, message, request_id}`: 401 with 1001 (no `Authorization`) or 1002 (a
scheme or key the sandbox does not accept, see `NativeConfig.kling_schemes`), 400 with 1200 (body not a JSON
object) or 1201 (a required field missing or ill-typed: `prompt`; `image` or `image_tail`; `human_image` and
`cloth_image`; a `duration` that is not a string; `n` outside 1..9), 404 with 1203 (no such task on this route).
Times and image entries follow `NativeConfig.kling_times` and `kling_image_key`.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.sandbox.native import NativeJobs, epoch_ms, iso, json_object

if TYPE_CHECKING:
    from server.sandbox.jobs import SandboxJob
    from server.sandbox.upstream import Sandbox

PREFIX = "kling/v1"
MAX_PROMPT = 2500
STATUS_WORDS = {"queued": "submitted", "running": "processing", "succeeded": "succeed", "failed": "failed"}


def _prompt_required(body: dict[str, Any]) -> str | None:
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return "prompt is required"
    return None


def _image_required(body: dict[str, Any]) -> str | None:
    if not body.get("image") and not body.get("image_tail"):
        return "image or image_tail is required"
    return None


def _person_and_cloth_required(body: dict[str, Any]) -> str | None:
    missing = [name for name in ("human_image", "cloth_image") if not body.get(name)]
    return f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required" if missing else None


@dataclass(frozen=True)
class KlingAction:
    path: str  # below PREFIX
    media: Literal["video", "image"]
    required: Callable[[dict[str, Any]], str | None]


ACTIONS = (
    KlingAction("videos/text2video", "video", _prompt_required),
    KlingAction("videos/image2video", "video", _image_required),
    KlingAction("images/generations", "image", _prompt_required),
    KlingAction("images/kolors-virtual-try-on", "image", _person_and_cloth_required),
)


def _problem(body: dict[str, Any], action: KlingAction) -> str | None:
    """The first thing Kling would refuse in this body (a light check: required fields and a few types)."""
    if (missing := action.required(body)) is not None:
        return missing
    for name in ("prompt", "negative_prompt"):
        if isinstance(body.get(name), str) and len(body[name]) > MAX_PROMPT:
            return f"{name} must be at most {MAX_PROMPT} characters"
    if "duration" in body and not isinstance(body["duration"], str):
        return 'duration must be a string such as "5" or "10"'
    n = body.get("n", 1)
    if action.path == "images/generations" and (not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 9):
        return "n must be an integer from 1 to 9"
    return None


def task_id() -> str:
    """A long decimal string, as Kling's task ids are (18 digits)."""
    return str(10**17 + secrets.randbelow(9 * 10**17))


class KlingRoutes:
    def __init__(self, sandbox: Sandbox) -> None:
        self._jobs = NativeJobs(sandbox)

    def routes(self) -> list[Route]:
        routes: list[Route] = []
        for action in ACTIONS:
            routes.append(Route(f"/{PREFIX}/{action.path}", self._creator(action), methods=["POST"]))
            routes.append(Route(f"/{PREFIX}/{action.path}/{{task_id}}", self._reader(action), methods=["GET"]))
        return routes

    # ---- answers --------------------------------------------------------------------------------

    def _time(self, wall: float) -> int | str:
        return epoch_ms(wall) if self._jobs.native.kling_times == "ms" else iso(wall)

    @staticmethod
    def _envelope(
        data: dict[str, Any] | None, *, code: int = 0, message: str = "SUCCEED", status: int = 200
    ) -> Response:
        answer: dict[str, Any] = {"code": code, "message": message, "request_id": str(uuid.uuid4())}
        if data is not None:
            answer["data"] = data
        return JSONResponse(answer, status_code=status)

    async def _admitted(self, request: Request) -> Response | None:
        verdict = await self._jobs.admitted(request, self._jobs.native.kling_schemes)
        if verdict == "empty":
            return self._envelope(None, code=1001, message="Authorization is empty", status=401)
        if verdict == "invalid":
            return self._envelope(None, code=1002, message="Authorization is invalid", status=401)
        return verdict

    def _data(self, job: SandboxJob, action: KlingAction, *, with_result: bool) -> dict[str, Any]:
        stage, changed = self._jobs.stage(job)
        data: dict[str, Any] = {"task_id": job.request_id, "task_status": STATUS_WORDS[stage]}
        if with_result:
            data["task_status_msg"] = (job.fail_with or "") if stage == "failed" else ""
            data["task_result"] = self._result(job, action) if stage == "succeeded" else None
        data["task_info"] = {"external_task_id": job.body.get("external_task_id")}
        data["created_at"] = self._time(job.created_wall)
        data["updated_at"] = self._time(changed)
        return data

    def _result(self, job: SandboxJob, action: KlingAction) -> dict[str, Any]:
        if action.media == "video":
            url = self._jobs.media_url(job.request_id, "output.mp4")
            return {"videos": [{"id": str(uuid.uuid4()), "url": url, "duration": str(job.body.get("duration", "5"))}]}
        count = job.body.get("n", 1) if action.path == "images/generations" else 1
        key = self._jobs.native.kling_image_key
        images = []
        for index in range(count):
            url = self._jobs.media_url(job.request_id, f"image-{index}.png")
            images.append({"index": index, "url": url} if key == "index" else {"id": str(uuid.uuid4()), "url": url})
        return {"images": images}

    # ---- routes ---------------------------------------------------------------------------------

    def _creator(self, action: KlingAction) -> Callable[[Request], Awaitable[Response]]:
        async def create(request: Request) -> Response:
            if (refused := await self._admitted(request)) is not None:
                return refused
            body = await json_object(request)
            if body is None:
                return self._envelope(None, code=1200, message="request body must be a JSON object", status=400)
            if (problem := _problem(body, action)) is not None:
                return self._envelope(None, code=1201, message=problem, status=400)
            job = self._jobs.create(task_id(), f"{PREFIX}/{action.path}", body, body.get("prompt"))
            return self._envelope(self._data(job, action, with_result=False))

        return create

    def _reader(self, action: KlingAction) -> Callable[[Request], Awaitable[Response]]:
        async def read(request: Request) -> Response:
            if (refused := await self._admitted(request)) is not None:
                return refused
            job = self._jobs.find(request.path_params["task_id"], f"{PREFIX}/{action.path}")
            if job is None:
                return self._envelope(None, code=1203, message="task not found", status=404)
            return self._envelope(self._data(job, action, with_result=True))

        return read


def kling_routes(sandbox: Sandbox) -> list[Route]:
    return KlingRoutes(sandbox).routes()

"""The sandbox's Luma routes, as the relays (UniAPI among them) publish Luma's generations under `/luma`.

| action | route |
|---|---|
| generate | `POST /luma/generations` (body: `user_prompt` required, plus `aspect_ratio`, `loop`, `image_url`, ...) |
| extend | `POST /luma/generations/{id}/extend` (body: `user_prompt` required; the generation must be completed) |
| get task | `GET /luma/generations/{id}` |
| download URL | `GET /luma/generations/{id}/download_video_url` -> `{url}` (an error until completed) |

Generate and extend answer (HTTP 200, or `NativeConfig.luma_create_status`) with a generation object: `{id (a
UUID), prompt, state, queue_state, created_at, batch_id, video, video_raw, liked, estimate_wait_seconds,
thumbnail, last_frame, failure_reason}`. `video` is null until completed, then `{url, width, height,
download_url}`; `video_raw`, `thumbnail` and `last_frame` are `{url, width, height}`. `state` moves `pending ->
processing -> completed | failed` (`queued -> dreaming -> ...` with `NativeConfig.luma_states="luma"`) by the
sandbox's clock; a failed generation carries its reason in `failure_reason` (Luma's own field).

Errors: 401 (no `Authorization`, or a scheme or key the sandbox does not accept, see `NativeConfig.luma_schemes`),
400 (body not a JSON object, `user_prompt` missing, extend of an unfinished generation, download URL before
completed), 404 (no such generation), each `{"detail": "…"}` or, with `NativeConfig.luma_errors="object"`,
`{"detail": {"reason": "…", "code": "…"}}`. Times follow `NativeConfig.luma_times`.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.sandbox.media import HEIGHT, WIDTH
from server.sandbox.native import NativeJobs, epoch_ms, iso, json_object

if TYPE_CHECKING:
    from server.sandbox.jobs import SandboxJob
    from server.sandbox.upstream import Sandbox

ROUTE = "luma/generations"
IMAGE_SIDE = 64  # the sample PNG is 64x64 (server/sandbox/media.py)
DOWNLOAD_LINK_SECONDS = 3600  # how long the download route's link says it is valid, as Luma's presigned links
STATE_WORDS = {
    "relay": {"queued": "pending", "running": "processing", "succeeded": "completed", "failed": "failed"},
    "luma": {"queued": "queued", "running": "dreaming", "succeeded": "completed", "failed": "failed"},
}


class LumaRoutes:
    def __init__(self, sandbox: Sandbox) -> None:
        self._jobs = NativeJobs(sandbox)

    def routes(self) -> list[Route]:
        return [
            Route(f"/{ROUTE}", self._generate, methods=["POST"]),
            Route(f"/{ROUTE}/{{id}}/extend", self._extend, methods=["POST"]),
            Route(f"/{ROUTE}/{{id}}/download_video_url", self._download_url, methods=["GET"]),
            Route(f"/{ROUTE}/{{id}}", self._get, methods=["GET"]),
        ]

    # ---- answers --------------------------------------------------------------------------------

    def _error(self, status: int, reason: str, code: str) -> Response:
        detail: Any = reason if self._jobs.native.luma_errors == "text" else {"reason": reason, "code": code}
        return JSONResponse({"detail": detail}, status_code=status)

    async def _admitted(self, request: Request) -> Response | None:
        verdict = await self._jobs.admitted(request, self._jobs.native.luma_schemes)
        if verdict == "empty":
            return self._error(401, "Not authenticated", "unauthorized")
        if verdict == "invalid":
            return self._error(401, "Invalid API key", "unauthorized")
        return verdict

    def _generation(self, job: SandboxJob) -> dict[str, Any]:
        native = self._jobs.native
        stage, _ = self._jobs.stage(job)

        def media(name: str, width: int, height: int) -> dict[str, Any] | None:
            if stage != "succeeded":
                return None
            return {"url": self._jobs.media_url(job.request_id, name), "width": width, "height": height}

        video, raw = media("video.mp4", WIDTH, HEIGHT), media("video_raw.mp4", WIDTH, HEIGHT)
        if video is not None and raw is not None:  # the watermark-free file, or "" as some relays answer
            video["download_url"] = raw["url"] if native.luma_download_url == "same" else ""
        return {
            "id": job.request_id,
            "prompt": job.body.get("user_prompt"),
            "state": STATE_WORDS[native.luma_states][stage],
            "queue_state": None,
            "created_at": iso(job.created_wall) if native.luma_times == "iso" else epoch_ms(job.created_wall),
            "batch_id": "",
            "video": video,
            "video_raw": raw,
            "liked": None,
            "estimate_wait_seconds": self._jobs.seconds_left(job) if stage in ("queued", "running") else None,
            "thumbnail": media("thumbnail.jpg", IMAGE_SIDE, IMAGE_SIDE),
            "last_frame": media("last_frame.jpg", IMAGE_SIDE, IMAGE_SIDE),
            "failure_reason": job.fail_with if stage == "failed" else None,
        }

    async def _start(self, request: Request, extends: str | None) -> Response:
        body = await json_object(request)
        if body is None:
            return self._error(400, "The request body must be a JSON object", "invalid_request")
        prompt = body.get("user_prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return self._error(400, "user_prompt is required", "invalid_request")
        if extends is not None:
            body = {**body, "extend_of": extends}
        job = self._jobs.create(str(uuid.uuid4()), ROUTE, body, prompt)
        return JSONResponse(self._generation(job), status_code=self._jobs.native.luma_create_status)

    # ---- routes ---------------------------------------------------------------------------------

    async def _generate(self, request: Request) -> Response:
        if (refused := await self._admitted(request)) is not None:
            return refused
        return await self._start(request, None)

    async def _extend(self, request: Request) -> Response:
        if (refused := await self._admitted(request)) is not None:
            return refused
        source = self._jobs.find(request.path_params["id"], ROUTE)
        if source is None:
            return self._error(404, "Generation not found", "not_found")
        if self._jobs.stage(source)[0] != "succeeded":
            return self._error(400, "Only a completed generation can be extended", "invalid_state")
        return await self._start(request, source.request_id)

    async def _get(self, request: Request) -> Response:
        if (refused := await self._admitted(request)) is not None:
            return refused
        job = self._jobs.find(request.path_params["id"], ROUTE)
        if job is None:
            return self._error(404, "Generation not found", "not_found")
        return JSONResponse(self._generation(job))

    async def _download_url(self, request: Request) -> Response:
        if (refused := await self._admitted(request)) is not None:
            return refused
        job = self._jobs.find(request.path_params["id"], ROUTE)
        if job is None:
            return self._error(404, "Generation not found", "not_found")
        if self._jobs.stage(job)[0] != "succeeded":
            return self._error(400, "The generation is not completed", "not_completed")
        expires = int(time.time()) + DOWNLOAD_LINK_SECONDS
        return JSONResponse({"url": self._jobs.media_url(job.request_id, f"download.mp4?expires={expires}")})


def luma_routes(sandbox: Sandbox) -> list[Route]:
    return LumaRoutes(sandbox).routes()

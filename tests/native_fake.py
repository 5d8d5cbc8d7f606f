"""A small fake of UniAPI's native Kling and Luma routes on 127.0.0.1, for the adapters' end-to-end tests: the JSON
shapes of docs/native-routes (Kling's `{code, message, request_id, data}` envelope and task states, Luma's generation
objects), one auth scheme accepted, each job moving one state further per status read, media served beside them,
and every request recorded (method, path, auth scheme) so a test can count what was sent.

A prompt containing "fail" makes a failed job; one containing "echo-key" makes the failure's reason quote the key,
and one containing "echo-key-id" gets the key back as its task or generation id.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.sandbox.media import sample_mp4, sample_png
from tests.servers import serving_in_thread

KEY = "native-fake-key-" + uuid.uuid4().hex[:12]
KLING_STATES = ("submitted", "processing", "succeed")
LUMA_STATES = ("pending", "dreaming", "completed")


@dataclass
class Job:
    family: str
    route: str
    body: dict[str, Any]
    reads: int = 0
    source: str | None = None  # the generation a Luma extend extends


@dataclass
class NativeFake:
    scheme: str = "Bearer"  # the one auth scheme accepted
    base_url: str = ""
    jobs: dict[str, Job] = field(default_factory=dict)
    sent: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, scheme)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(831922345719271433))

    def count(self, method: str, prefix: str = "") -> int:
        return sum(1 for m, path, _ in self.sent if m == method and path.startswith(prefix))

    # ---- the app ----------------------------------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/kling/v1/{kind}/{action}", self.kling_create, methods=["POST"]),
                Route("/kling/v1/{kind}/{action}/{task_id}", self.kling_get, methods=["GET"]),
                Route("/luma/generations", self.luma_create, methods=["POST"]),
                Route("/luma/generations/{gid}/extend", self.luma_extend, methods=["POST"]),
                Route("/luma/generations/{gid}", self.luma_get, methods=["GET"]),
                Route("/luma/generations/{gid}/download_video_url", self.luma_download, methods=["GET"]),
                Route("/media/{name}", self.media, methods=["GET"]),
            ]
        )

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        self.sent.append((request.method, request.url.path, scheme))
        return scheme == self.scheme and key == KEY

    async def kling_create(self, request: Request) -> Response:
        if not self._authorized(request):
            return JSONResponse({"code": 1001, "message": "Authorization invalid", "request_id": "r"}, 401)
        body = await request.json()
        task_id = KEY if "echo-key-id" in str(body.get("prompt")) else str(next(self._ids))
        route = f"kling/v1/{request.path_params['kind']}/{request.path_params['action']}"
        self.jobs[task_id] = Job("kling", route, body)
        data = {"task_id": task_id, "task_status": "submitted", "created_at": 1722769557708}
        return JSONResponse({"code": 0, "message": "SUCCEED", "request_id": "r", "data": data})

    async def kling_get(self, request: Request) -> Response:
        if not self._authorized(request):
            return JSONResponse({"code": 1001, "message": "Authorization invalid", "request_id": "r"}, 401)
        job = self.jobs.get(request.path_params["task_id"])
        if job is None or job.family != "kling":
            return JSONResponse({"code": 1203, "message": "task not found", "request_id": "r"}, 404)
        state = KLING_STATES[min(job.reads, 2)]
        job.reads += 1
        data: dict[str, Any] = {"task_id": request.path_params["task_id"], "task_status": state, "task_result": None}
        prompt = str(job.body.get("prompt", ""))
        if state == "succeed" and "fail" in prompt:
            data["task_status"] = "failed"
            reason = f"risk control ({KEY})" if "echo-key" in prompt else "Failure to pass the risk control system"
            data["task_status_msg"] = reason
        elif state == "succeed" and request.path_params["kind"] == "videos":
            data["task_result"] = {"videos": [{"id": "v1", "url": f"{self.base_url}/media/out", "duration": "5"}]}
        elif state == "succeed":
            data["task_result"] = {"images": [{"index": 0, "url": f"{self.base_url}/media/tryon.png"}]}
        return JSONResponse({"code": 0, "message": "SUCCEED", "request_id": "r", "data": data})

    async def luma_create(self, request: Request) -> Response:
        if not self._authorized(request):
            return JSONResponse({"detail": "Unauthorized"}, 401)
        return self._new_generation("luma/generations", await request.json(), None)

    async def luma_extend(self, request: Request) -> Response:
        if not self._authorized(request):
            return JSONResponse({"detail": "Unauthorized"}, 401)
        source = self.jobs.get(request.path_params["gid"])
        if source is None or source.family != "luma":
            return JSONResponse({"detail": {"reason": "generation not found", "code": 404}}, 404)
        return self._new_generation("luma/generations/extend", await request.json(), request.path_params["gid"])

    def _new_generation(self, route: str, body: dict[str, Any], source: str | None) -> Response:
        gid = KEY if "echo-key-id" in str(body.get("user_prompt")) else str(uuid.uuid4())
        self.jobs[gid] = Job("luma", route, body, source=source)
        return JSONResponse(self._generation(gid, "pending"), 201)

    def _generation(self, gid: str, state: str) -> dict[str, Any]:
        job = self.jobs[gid]
        video = None
        if state == "completed":
            video = {
                "url": f"{self.base_url}/media/{gid}-watermarked.mp4",
                "width": 64,
                "height": 64,
                "download_url": "",
            }
        return {
            "id": gid,
            "prompt": job.body.get("user_prompt"),
            "state": state,
            "created_at": "2026-12-08T00:00:00.000Z",
            "video": video,
            "thumbnail": {"url": f"{self.base_url}/media/{gid}-thumb.png", "width": 64, "height": 64},
            "estimate_wait_seconds": None,
        }

    async def luma_get(self, request: Request) -> Response:
        if not self._authorized(request):
            return JSONResponse({"detail": "Unauthorized"}, 401)
        gid = request.path_params["gid"]
        job = self.jobs.get(gid)
        if job is None or job.family != "luma":
            return JSONResponse({"detail": "Generation not found"}, 404)
        state = LUMA_STATES[min(job.reads, 2)]
        job.reads += 1
        answer = self._generation(gid, state)
        if state == "completed" and "fail" in str(job.body.get("user_prompt", "")):
            answer |= {"state": "failed", "video": None, "failure_reason": "400: prompt not allowed"}
        return JSONResponse(answer)

    async def luma_download(self, request: Request) -> Response:
        if not self._authorized(request):
            return JSONResponse({"detail": "Unauthorized"}, 401)
        gid = request.path_params["gid"]
        job = self.jobs.get(gid)
        if job is None or job.reads < 3:
            return JSONResponse({"detail": "Generation not completed"}, 400)
        return JSONResponse({"url": f"{self.base_url}/media/{gid}-clean.mp4"})

    async def media(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name.endswith(".png"):
            return Response(sample_png(), media_type="image/png")
        return Response(sample_mp4(), media_type="video/mp4")


@contextmanager
def native_fake(scheme: str = "Bearer") -> Iterator[NativeFake]:
    fake = NativeFake(scheme=scheme)
    with serving_in_thread(fake.app()) as port:
        fake.base_url = f"http://127.0.0.1:{port}"
        yield fake

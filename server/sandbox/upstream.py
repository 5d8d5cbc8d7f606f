"""A local upstream that speaks fal's queue protocol, for the demo and the tests (no key, no network).

A real HTTP server on 127.0.0.1 (ephemeral port) in a background thread. Jobs move IN_QUEUE -> IN_PROGRESS
(with log lines) -> COMPLETED over configurable times, each job's life following from its record and the clock
(`server/sandbox/jobs.py`). The records live in a `JobBook` (`server/sandbox/book.py`): with
`SandboxConfig.jobs_dir` in a folder, so every sandbox started on it answers for every job. What is specific to
each model comes from `ModelRules` (the catalog provides them, see `tools.catalog.sandbox_rules`): submits are
validated with the same classes the MCP tools use, so a bad input gets fal's 422, and outputs have each model's
shape. Without rules any input is accepted and every output is a video. Every request is recorded for tests to
inspect. UniAPI's native Kling and Luma routes are served beside them (server/sandbox/kling.py, luma.py; their
dialect knobs in native.py), their jobs kept in the same book.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from server.sandbox import media as media_files
from server.sandbox.billing import SANDBOX_STARTING_BALANCE, SANDBOX_UNIT_PRICES, billed_units, billing_routes
from server.sandbox.book import JobBook
from server.sandbox.faults import DroppingConnections, Fault, FaultBook
from server.sandbox.jobs import SandboxConfig, SandboxJob, job_logs, job_phase, new_job
from server.sandbox.kling import kling_routes
from server.sandbox.luma import luma_routes
from server.sandbox.native import FAIL_MARKER, NativeConfig
from server.sandbox.ranges import ranged_response
from server.sandbox.storage import storage_routes
from server.upstream.ids import app_id

MediaKind = Literal["video", "image"]


class ModelRules(Protocol):
    """What the sandbox knows of each model: which inputs fal would refuse, and the shape of its output."""

    def problems(self, endpoint_id: str, body: dict[str, Any]) -> list[dict[str, Any]] | None:
        """fal's 422 `detail` entries ({loc, msg, type}) for an input the model refuses; None when it is fine."""
        ...

    def media_kind(self, endpoint_id: str) -> MediaKind: ...

    def output(self, endpoint_id: str, media_url: str, content_type: str) -> dict[str, Any] | None:
        """The model's output around one media file; None for a model it does not know."""
        ...

    def price_unit(self, endpoint_id: str) -> str | None:
        """The unit the model is priced in (a key of `SANDBOX_UNIT_PRICES`); None: the sandbox does not price it."""
        ...

    def units(self, endpoint_id: str, body: dict[str, Any], unit: str) -> float | None:
        """How many of `unit` the input makes (e.g. its duration in seconds); None when the input does not tell."""
        ...


@dataclass
class SeenRequest:
    method: str
    path: str
    query: str
    host: str
    authorization: str | None
    body: bytes
    user_agent: str | None = None
    accept_encoding: str | None = None  # what the client offered (it asks for answers uncompressed)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def instance(self) -> str | None:
        """The server instance that sent it (its User-Agent's `instance/<id>`), to tell instances apart."""
        for part in (self.user_agent or "").split():
            if part.startswith("instance/"):
                return part.removeprefix("instance/")
        return None


class Sandbox:
    """Start with `with Sandbox() as sandbox:` (or start()/stop()); `sandbox.base_url` is the upstream."""

    def __init__(
        self, config: SandboxConfig | None = None, rules: ModelRules | None = None, native: NativeConfig | None = None
    ) -> None:
        self.config = config or SandboxConfig()
        self.native = native or NativeConfig()  # the Kling and Luma routes' dialect (server/sandbox/native.py)
        self.rules = rules
        self.jobs = JobBook(self.config.jobs_dir)
        self.requests: list[SeenRequest] = []
        self.fail_next: list[str] = []  # error messages for the next submitted jobs to fail with
        self._faults = FaultBook()
        self.stored_files: dict[str, tuple[bytes, str]] = {}
        self.billed: dict[str, float] = {}  # USD of each job whose result was fetched (UniAPI's usage route sums it)
        self.base_url = ""
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = self._build_app()

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> str:
        # Idle connections are kept longer than clients keep them (httpx: 5 s), as real servers do: otherwise a
        # client may reuse a connection at the moment the sandbox closes it, a failure no real upstream scripts.
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=0, log_level="critical", lifespan="off", timeout_keep_alive=60
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fal-sandbox", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the sandbox upstream did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=5)

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- inspection helpers for tests -----------------------------------------------------------

    def seen(self, method: str | None = None) -> list[SeenRequest]:
        with self._lock:
            return [r for r in self.requests if method is None or r.method == method]

    def expire(self, request_id: str) -> None:
        """Forget a job, as fal does once its retention has passed."""
        with self._lock:
            self.jobs.pop(request_id, None)

    def finish_now(self, request_id: str) -> None:
        with self._lock:
            job = self.jobs[request_id]
            job.submitted_at -= job.queue_seconds + job.run_seconds
            self.jobs[request_id] = job

    # ---- job model ------------------------------------------------------------------------------

    def _status_body(self, job: SandboxJob, now: float) -> tuple[int, dict[str, Any]]:
        phase, elapsed = job_phase(job, now)
        body: dict[str, Any] = {"status": phase, "request_id": job.request_id}
        base = self._advertised_base()
        body["response_url"] = f"{base}/{app_id(job.endpoint_id)}/requests/{job.request_id}"
        body["status_url"] = body["response_url"] + "/status"
        if phase == "IN_QUEUE":
            body["queue_position"] = job.queue_position
            body["logs"] = None
            return (200 if self.config.flavor == "uniapi" else 202), body
        body["logs"] = job_logs(job, self.config, elapsed)
        if phase == "IN_PROGRESS":
            return (200 if self.config.flavor == "uniapi" else 202), body
        body["metrics"] = {"inference_time": job.run_seconds}
        error = "Request was cancelled" if job.cancelled else job.fail_with
        if error:
            body["error"] = error
            body["error_type"] = "cancelled" if job.cancelled else "runner_error"
        return 200, body

    def _advertised_base(self) -> str:
        # UniAPI hands back queue.fal.run URLs that a UniAPI token cannot use; clients must not follow them.
        return "https://queue.fal.run" if self.config.flavor == "uniapi" else self.base_url

    # ---- HTTP -----------------------------------------------------------------------------------

    def _build_app(self) -> ASGIApp:
        return DroppingConnections(
            self._faults,
            self._record,
            Starlette(
                routes=[
                    Route("/files/{request_id}/{name}", self._file, methods=["GET"]),
                    *kling_routes(self),  # UniAPI's native families, before fal's catch-all submit route
                    *luma_routes(self),
                    # fal storage (uploads), mounted before the catch-all submit route
                    *(
                        self._recorded(route)
                        for route in storage_routes(self.config.key, self.stored_files, self._base)
                    ),
                    # fal's pricing API and UniAPI's usage route (server/sandbox/billing.py)
                    *(
                        self._recorded(route)
                        for route in billing_routes(
                            self.config.key, self._price_unit, self._spent, balance=SANDBOX_STARTING_BALANCE
                        )
                    ),
                    Route("/{path:path}/requests/{request_id}/status/stream", self._stream, methods=["GET"]),
                    Route("/{path:path}/requests/{request_id}/status", self._status, methods=["GET"]),
                    Route("/{path:path}/requests/{request_id}/cancel", self._cancel, methods=["PUT"]),
                    Route("/{path:path}/requests/{request_id}", self._result, methods=["GET"]),
                    Route("/{path:path}", self._submit, methods=["POST"]),
                ]
            ),
        )

    def _base(self) -> str:
        return self.base_url

    def _recorded(self, route: Route) -> Route:
        """The same route, with its requests recorded (and faults injected) like every other sandbox request."""
        endpoint = route.endpoint

        async def recorded(request: Request) -> Response:
            if (scripted := await self._scripted(request)) is not None:
                return scripted
            response: Response = await endpoint(request)
            return response

        return Route(route.path, recorded, methods=sorted(route.methods or ()))

    async def _record(self, request: Request) -> None:
        body = await request.body()
        with self._lock:
            self.requests.append(
                SeenRequest(
                    method=request.method,
                    path=request.url.path,
                    query=request.url.query,
                    host=request.headers.get("host", ""),
                    authorization=request.headers.get("authorization"),
                    body=body,
                    user_agent=request.headers.get("user-agent"),
                    accept_encoding=request.headers.get("accept-encoding"),
                )
            )

    def inject(self, fault: Fault) -> None:
        self._faults.inject(fault)

    @property
    def faults(self) -> list[Fault]:
        """The injected faults not used up yet."""
        return self._faults.pending

    async def _scripted(self, request: Request) -> Response | None:
        """Record the request, then answer with a scripted fault if one matches."""
        await self._record(request)
        return await self._faults.answer(request)

    async def _checked(self, request: Request, *, unsupported: Response | None = None) -> Response | None:
        """The common start of every job route: record, scripted faults, routes this flavor lacks, the key."""
        if (scripted := await self._scripted(request)) is not None:
            return scripted
        if unsupported is not None:
            return unsupported
        if not self._authorized(request):
            return JSONResponse({"detail": "Invalid API key"}, status_code=401)
        return None

    async def _job(
        self, request: Request, *, unsupported: Response | None = None, missing: Response | None = None
    ) -> SandboxJob | Response:
        """The common start of every route about one job: `_checked`, then the job its path names, or fal's 404."""
        if (early := await self._checked(request, unsupported=unsupported)) is not None:
            return early
        with self._lock:
            job = self._find(request)
        if job is None:
            return missing or JSONResponse({"detail": "Request not found"}, status_code=404)
        return job

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Key {self.config.key}"

    async def _submit(self, request: Request) -> Response:
        if (early := await self._checked(request)) is not None:
            return early
        endpoint_id = request.path_params["path"]
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"detail": "Body is not JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"detail": "Body must be a JSON object"}, status_code=422)
        problems = self.rules.problems(endpoint_id, body) if self.rules is not None else None
        if problems:
            return JSONResponse({"detail": problems}, status_code=422)
        request_id = str(uuid.uuid4())
        prompt = body.get("prompt")
        with self._lock:
            fail = self.fail_next.pop(0) if self.fail_next else None
            if fail is None and isinstance(prompt, str) and FAIL_MARKER in prompt:
                fail = "The model failed to generate this clip (sandbox failure requested)"
            self.jobs.prune(self.config.retention_seconds)
            now = time.time()
            waiting = sum(1 for j in self.jobs.values() if j.completed_at > now)
            job = new_job(request_id, endpoint_id, body, self.config, queue_position=waiting, fail_with=fail)
            self.jobs[request_id] = job
        answer: dict[str, Any] = {
            "status": "IN_QUEUE",
            "request_id": request_id,
            "queue_position": job.queue_position,
            "response_url": f"{self._advertised_base()}/{app_id(endpoint_id)}/requests/{request_id}",
            "status_url": f"{self._advertised_base()}/{app_id(endpoint_id)}/requests/{request_id}/status",
            "logs": None,
            "metrics": {},
        }
        if self.config.flavor == "fal":
            answer["cancel_url"] = answer["response_url"] + "/cancel"
        return JSONResponse(answer)

    def _find(self, request: Request) -> SandboxJob | None:
        job = self.jobs.get(request.path_params["request_id"])
        if job is None or app_id(job.endpoint_id) != request.path_params["path"]:
            return None
        if time.time() - job.completed_at > self.config.retention_seconds:
            return None
        return job

    async def _status(self, request: Request) -> Response:
        job = await self._job(request)
        if isinstance(job, Response):
            return job
        with self._lock:
            code, body = self._status_body(job, time.time())
        if request.query_params.get("logs") != "1":
            body.pop("logs", None)
        return JSONResponse(body, status_code=code)

    async def _stream(self, request: Request) -> Response:
        no_stream = JSONResponse({"detail": "Not Found"}, status_code=404) if self.config.flavor == "uniapi" else None
        job = await self._job(request, unsupported=no_stream)
        if isinstance(job, Response):
            return job
        with_logs = request.query_params.get("logs") == "1"
        return StreamingResponse(self._events(job, with_logs), media_type="text/event-stream")

    async def _events(self, job: SandboxJob, with_logs: bool) -> AsyncIterator[bytes]:
        """One event per change of state or logs, pings while quiet, closed after COMPLETED."""
        last: tuple[str, int] | None = None
        sent = 0
        quiet_since = time.monotonic()
        while True:
            with self._lock:
                job = self.jobs.get(job.request_id) or job  # a cancel (from any process) shows at once
                _, body = self._status_body(job, time.time())
            if not with_logs:
                body.pop("logs", None)
            signature = (body["status"], len(body.get("logs") or []))
            if signature != last:
                if self.config.drop_streams_after is not None and sent >= self.config.drop_streams_after:
                    raise ConnectionResetError("sandbox: stream dropped on purpose")
                last, sent, quiet_since = signature, sent + 1, time.monotonic()
                yield f"data: {json.dumps(body)}\n\n".encode()
                if body["status"] == "COMPLETED":
                    return
            elif time.monotonic() - quiet_since >= self.config.stream_ping_seconds:
                quiet_since = time.monotonic()
                yield b": ping\n\n"
            await asyncio.sleep(self.config.stream_tick_seconds)

    async def _result(self, request: Request) -> Response:
        job = await self._job(request)
        if isinstance(job, Response):
            return job
        phase, _ = job_phase(job)
        if phase != "COMPLETED":
            return JSONResponse({"detail": "Request is still in progress"}, status_code=400)
        if job.cancelled:
            return JSONResponse(
                {"detail": "Request was cancelled", "error_type": "cancelled"},
                status_code=400,
                headers={"X-Fal-Error-Type": "cancelled"},
            )
        if job.fail_with:
            return JSONResponse(
                {"detail": job.fail_with, "error_type": "runner_error"},
                status_code=500,
                headers={"X-Fal-Error-Type": "runner_error"},
            )
        return JSONResponse(self._output(job), headers=self._bill(job))

    def _price_unit(self, endpoint_id: str) -> str | None:
        # without rules every output is a video, one a request
        return "video" if self.rules is None else self.rules.price_unit(endpoint_id)

    def _spent(self) -> float:
        with self._lock:
            return sum(self.billed.values())

    def _bill(self, job: SandboxJob) -> dict[str, str]:
        """fal's `x-fal-billable-units` header of a finished job's result (UniAPI's flavor sends none: whether it
        passes fal's on is not known), and the job's cost kept for the usage route."""
        unit = self._price_unit(job.endpoint_id)
        if unit is None or self.config.flavor != "fal":
            return {}
        quantity = 1.0 if self.rules is None else self.rules.units(job.endpoint_id, job.body, unit)
        if quantity is None:
            return {}
        units = billed_units(unit, quantity)
        with self._lock:
            self.billed[job.request_id] = round(units * SANDBOX_UNIT_PRICES[unit], 6)
        return {"x-fal-billable-units": f"{units:g}"}

    async def _cancel(self, request: Request) -> Response:
        no_cancel = (
            JSONResponse({"detail": "Method Not Allowed"}, status_code=405) if self.config.flavor == "uniapi" else None
        )
        job = await self._job(
            request, unsupported=no_cancel, missing=JSONResponse({"status": "NOT_FOUND"}, status_code=404)
        )
        if isinstance(job, Response):
            return job
        with self._lock:
            phase, _ = job_phase(job)
            if phase == "COMPLETED":
                return JSONResponse({"status": "ALREADY_COMPLETED"}, status_code=400)
            job.cancelled_at = time.time()
            self.jobs[job.request_id] = job
        return JSONResponse({"status": "CANCELLATION_REQUESTED"}, status_code=202)

    async def _file(self, request: Request) -> Response:
        if (scripted := await self._scripted(request)) is not None:
            return scripted
        name = request.path_params["name"]
        content, content_type = media_files.sample_for(name)
        await asyncio.sleep(0)
        return ranged_response(content, content_type, request.headers.get("range"))

    def _output(self, job: SandboxJob) -> dict[str, Any]:
        is_image = self.rules is not None and self.rules.media_kind(job.endpoint_id) == "image"
        name = f"output.{'png' if is_image else 'mp4'}"
        media_url = f"{self.base_url}/files/{job.request_id}/{name}"
        content_type = "image/png" if is_image else "video/mp4"
        output = self.rules.output(job.endpoint_id, media_url, content_type) if self.rules is not None else None
        if output is None:
            output = {"video": {"url": media_url, "content_type": content_type, "file_name": name}}
        media_files.add_file_size(output, media_url, len(media_files.sample_for(name)[0]))
        return output

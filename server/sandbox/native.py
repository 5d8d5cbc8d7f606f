"""What the sandbox's native Kling and Luma routes share: their dialect settings, their auth, their job book.

UniAPI passes Kling's and Luma's own APIs through under `/kling` and `/luma` (server/sandbox/kling.py and
server/sandbox/luma.py serve them). Where the relays that publish those routes disagree, `NativeConfig` picks one
variant, so a client can be tested against each. The knobs (pass `Sandbox(config, rules, native=NativeConfig(...))`):

- `kling_schemes`, `luma_schemes`: the `Authorization` schemes each family accepts (default `("Bearer",)`), always
  with the sandbox's key (`SandboxConfig.key`). Anything else is a 401 in the family's error shape: Kling
  `{code: 1001 (no header) | 1002 (wrong scheme or key), message, request_id}`, Luma `{detail}`.
- `kling_times`: Kling's `created_at`/`updated_at` as `"ms"` (epoch milliseconds, the official API) or `"iso"`.
- `kling_image_key`: each Kling image result as `{index, url}` (`"index"`, official) or `{id, url}` (`"id"`).
- `luma_states`: `"relay"` (`pending | processing | completed | failed`) or `"luma"` (`queued | dreaming |
  completed | failed`, Luma's own words).
- `luma_times`: Luma's `created_at` as `"iso"` (ISO 8601, the relays) or `"ms"`.
- `luma_create_status`: the HTTP status of a generate or extend answer (200 or 201).
- `luma_errors`: Luma's error `detail` as `"text"` (`{"detail": "…"}`) or `"object"` (`{"detail": {reason, code}}`).
- `luma_download_url`: `video.download_url` as `"same"` (a link to the file) or `"empty"` (`""`, as some relays
  answer: the client must use the download URL route or `video.url`).

`OTHER_DIALECT` sets every knob to its other value: the deliberately different fake of the contract tests.

Jobs live in the sandbox's own job book (`Sandbox.jobs`, a `JobBook`: server/sandbox/book.py, shared by every sandbox
on one jobs folder) and move by the clock as the fal jobs do (server/sandbox/jobs.py): queued for `queue_seconds`,
running for `run_seconds`, then done; `Sandbox.finish_now`, `Sandbox.expire`, `Sandbox.fail_next` and `FAIL_MARKER`
in the prompt work on them too. Their outputs are the sandbox's own playable
media, served from `/files/{job id}/{name}` (server/sandbox/media.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from starlette.requests import Request
from starlette.responses import Response

from server.sandbox.jobs import SandboxJob, job_phase, new_job

if TYPE_CHECKING:
    from server.sandbox.upstream import Sandbox

Stage = Literal["queued", "running", "succeeded", "failed"]
Refusal = Literal["empty", "invalid"]  # no Authorization header; a scheme or key the family does not accept
FAIL_REASON = "The model failed to generate this clip (sandbox failure requested)"
FAIL_MARKER = "[sandbox:fail]"  # the same marker as the fal routes' (server.sandbox.upstream.FAIL_MARKER)


@dataclass(frozen=True)
class NativeConfig:
    kling_schemes: tuple[str, ...] = ("Bearer",)
    luma_schemes: tuple[str, ...] = ("Bearer",)
    kling_times: Literal["ms", "iso"] = "ms"
    kling_image_key: Literal["index", "id"] = "index"
    luma_states: Literal["relay", "luma"] = "relay"
    luma_times: Literal["iso", "ms"] = "iso"
    luma_create_status: int = 200
    luma_errors: Literal["text", "object"] = "text"
    luma_download_url: Literal["same", "empty"] = "same"


OTHER_DIALECT = replace(
    NativeConfig(),
    kling_schemes=("Key",),
    luma_schemes=("Key",),
    kling_times="iso",
    kling_image_key="id",
    luma_states="luma",
    luma_times="ms",
    luma_create_status=201,
    luma_errors="object",
    luma_download_url="empty",
)


def epoch_ms(wall: float) -> int:
    return int(wall * 1000)


def iso(wall: float) -> str:
    """ISO 8601 in UTC with milliseconds, as the relays write it (`2024-06-14T10:20:30.123Z`)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int((wall % 1) * 1000):03d}Z"


class NativeJobs:
    """The sandbox's job book and HTTP plumbing as the native routes use them."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    @property
    def native(self) -> NativeConfig:
        return self._sandbox.native

    async def admitted(self, request: Request, schemes: tuple[str, ...]) -> Response | Refusal | None:
        """Record the request and answer a scripted fault if one matches (a Response); else "empty" or "invalid"
        when its `Authorization` is missing or not one of `schemes` with the sandbox's key; else None."""
        if (scripted := await self._sandbox._scripted(request)) is not None:
            return scripted
        header = request.headers.get("authorization")
        if not header:
            return "empty"
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in {s.lower() for s in schemes} or token.strip() != self._sandbox.config.key:
            return "invalid"
        return None

    def create(self, job_id: str, route: str, body: dict[str, Any], prompt: object) -> SandboxJob:
        """A new job on `route` (its family's create path, e.g. `kling/v1/videos/text2video`), failing when asked
        to (`Sandbox.fail_next`, or the fail marker in its prompt)."""
        with self._sandbox._lock:
            fail = self._sandbox.fail_next.pop(0) if self._sandbox.fail_next else None
            if fail is None and isinstance(prompt, str) and FAIL_MARKER in prompt:
                fail = FAIL_REASON
            job = new_job(job_id, route, body, self._sandbox.config, fail_with=fail)
            self._sandbox.jobs[job_id] = job
        return job

    def find(self, job_id: str, route: str) -> SandboxJob | None:
        with self._sandbox._lock:
            job = self._sandbox.jobs.get(job_id)
        return job if job is not None and job.endpoint_id == route else None

    def stage(self, job: SandboxJob) -> tuple[Stage, float]:
        """Where the job is now, and the wall time it got there (its `updated_at`)."""
        phase, _ = job_phase(job)
        if phase == "IN_QUEUE":
            return "queued", job.created_wall
        if phase == "IN_PROGRESS":
            return "running", job.created_wall + job.queue_seconds
        done = job.created_wall + job.queue_seconds + job.run_seconds
        return ("failed" if job.fail_with or job.cancelled else "succeeded"), done

    def seconds_left(self, job: SandboxJob) -> int:
        return max(0, round(job.created_wall + job.queue_seconds + job.run_seconds - time.time()))

    def media_url(self, job_id: str, name: str) -> str:
        return f"{self._sandbox.base_url}/files/{job_id}/{name}"


async def json_object(request: Request) -> dict[str, Any] | None:
    """The request's body as a JSON object, or None when it is not one."""
    try:
        body = json.loads(await request.body())
    except ValueError:
        return None
    return body if isinstance(body, dict) else None

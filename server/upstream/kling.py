"""UniAPI's native Kling routes: `POST {base}/kling/v1/{videos|images}/{action}` creates a task, `GET` the same path
plus `/{task_id}` reads it (status and result in one answer). No status stream, no cancel.

Every answer is an envelope `{code, message, request_id, data}` (`code` 0 is success); `data.task_status` is
`submitted | processing | succeed | failed`, `data.task_status_msg` the failure's reason and `data.task_result`
`{videos: [{id, url, duration}]}` or `{images: [{index, url}]}` once it succeeded. Task ids are long decimal strings.
"""

from __future__ import annotations

import logging
import mimetypes
from typing import Any
from urllib.parse import urlsplit

import httpx

from server.errors import SubmitOutcomeUnknownError
from server.errors import describe_detail as describe
from server.upstream import ids
from server.upstream.ids import Family
from server.upstream.polled import PolledAdapter, TaskStates
from server.upstream.reports import StatusReport, SubmitReceipt
from server.upstream.responses import describe_body, safe_json

log = logging.getLogger(__name__)

STATES: dict[str, str] = {"submitted": "IN_QUEUE", "processing": "IN_PROGRESS", "succeed": "COMPLETED"}
# The MIME type of a result file whose URL does not say it (Kling's videos are MP4, its images PNG or JPEG).
DEFAULT_TYPES = {"videos": "video/mp4", "images": "image/png"}
_TASK_STATES = TaskStates(
    STATES,
    no_reason="Kling reports the task failed (no reason given)",
    error_type="task_failed",
    unknown_warning="Kling reported an unknown task status %r; taken as still running",
    log=log,
)


class KlingAdapter(PolledAdapter):
    family: Family = "kling"
    title = "Kling"
    noun = "task"

    async def submit(self, model_id: str, body: dict[str, Any]) -> SubmitReceipt:
        response = await self._client.post(model_id, body, family="kling")
        self._client.answers.raise_for_status(response, action="submit")
        # Accepted (2xx): whatever is wrong with the answer, a task may be running and billed.
        data = _data(self._client.scrub(safe_json(response)))
        task_id = data.get("task_id") if data is not None else None
        if not isinstance(task_id, str | int) or isinstance(task_id, bool):
            raise SubmitOutcomeUnknownError(
                f"Kling accepted the submit (HTTP {response.status_code}) but its answer has no task id "
                f"({self._said(response)}), so the job cannot be tracked. A task may be running and "
                "billed: check your UniAPI dashboard or list_fal_jobs before resubmitting.",
                status_code=response.status_code,
            )
        try:
            task = ids.validate_request_id(str(task_id))
        except ids.InvalidIdError:
            raise SubmitOutcomeUnknownError(
                "Kling accepted the submit but answered with a malformed task id, so the job cannot be tracked. A "
                "task may be running and billed: check your UniAPI dashboard before resubmitting."
            ) from None
        assert data is not None
        report = parse_task(data)
        return SubmitReceipt(request_id=task, endpoint_id=model_id, status=report.state, queue_position=None)

    def _task_path(self, model_id: str, request_id: str) -> str:
        return f"{model_id}/{request_id}"

    def _unwrap(self, body: Any) -> dict[str, Any] | None:
        return _data(body)

    def _parse(self, task: dict[str, Any]) -> StatusReport:
        return parse_task(task)

    async def _output(self, request_id: str, task: dict[str, Any]) -> dict[str, Any]:
        return task_output(task)

    def _said(self, response: httpx.Response) -> str:
        """What an answer without a task says: Kling's own code and message (the key cut out), or its kind."""
        body = self._client.scrub(safe_json(response))
        if isinstance(body, dict) and body.get("message"):
            return f"code {describe(body.get('code'))}: {describe(body.get('message'), 200)}"
        return describe_body(response)


def parse_task(data: dict[str, Any]) -> StatusReport:
    """A Kling task as a status (see `TaskStates`)."""
    return _TASK_STATES.report(str(data.get("task_status") or "").lower(), data.get("task_status_msg"))


def task_output(data: dict[str, Any]) -> dict[str, Any]:
    """A succeeded task's result: each video and image with its MIME type, so it is shown and saved as what it is."""
    result = data.get("task_result")
    output: dict[str, Any] = {"task_id": str(data.get("task_id", ""))}
    if not isinstance(result, dict):
        return output
    for kind, default in DEFAULT_TYPES.items():
        items = result.get(kind)
        if not isinstance(items, list):
            continue
        output[kind] = [_typed(item, default) for item in items if isinstance(item, dict)]
    return output


def _typed(item: dict[str, Any], default: str) -> dict[str, Any]:
    url = item.get("url")
    guessed = mimetypes.guess_type(urlsplit(url).path)[0] if isinstance(url, str) else None
    kind = default.split("/")[0]
    content_type = guessed if guessed and guessed.startswith(kind + "/") else default
    return {**item, "content_type": content_type}


def _data(envelope: Any) -> dict[str, Any] | None:
    """The envelope's `data` when `code` says success (0, or absent); None otherwise."""
    if not isinstance(envelope, dict):
        return None
    code = envelope.get("code", 0)
    data = envelope.get("data")
    if code not in (0, "0") or not isinstance(data, dict):
        return None
    return data

"""What each tool does, free of MCP: validate, call the upstream, shape the answer.

Failures are raised as `FalError` / `InvalidIdError` / `InputInvalidError`; the MCP layer turns them into
`isError` results.
"""

from __future__ import annotations

import time
from typing import Any

from server.errors import InvalidRequestError, JobFailedError
from server.ids import normalize_endpoint_id, validate_request_id
from server.runtime import Runtime
from server.upstream import StatusReport
from tools.answers import Outcome, ResultAnswer, StatusAnswer, SubmitAnswer
from tools.media import find_media
from tools.validation import check_input

POLL_HINT_SECONDS = 30


async def submit(rt: Runtime, model: str, params: dict[str, Any]) -> SubmitAnswer:
    endpoint_id = normalize_endpoint_id(model)
    if not isinstance(params, dict):
        raise InvalidRequestError('input must be a JSON object of the model\'s parameters, e.g. {"prompt": "..."}')
    checked = check_input(endpoint_id, params)
    receipt = await rt.upstream.submit(endpoint_id, checked.body)
    rt.jobs.remember(receipt.request_id, endpoint_id)
    return SubmitAnswer(
        request_id=receipt.request_id,
        model=endpoint_id,
        status=receipt.status,
        queue_position=receipt.queue_position,
        validated=checked.entry is not None,
        notes=checked.notes,
        next=(
            f"Submitted. Video jobs take 1-5 minutes: call get_fal_result(request_id='{receipt.request_id}') "
            f"in about {POLL_HINT_SECONDS} seconds, or get_fal_status to follow progress."
        ),
    )


async def status(rt: Runtime, request_id: str, model: str | None) -> StatusAnswer:
    request_id, endpoint_id = _resolve(rt, request_id, model)
    report = await rt.upstream.status(endpoint_id, request_id)
    return _status_answer(rt, request_id, endpoint_id, report)


async def result(rt: Runtime, request_id: str, model: str | None) -> ResultAnswer:
    request_id, endpoint_id = _resolve(rt, request_id, model)
    fetched = await rt.upstream.result(endpoint_id, request_id)
    if fetched.output is None:
        report = await rt.upstream.status(endpoint_id, request_id)
        if report.failed:
            raise JobFailedError(f"The job failed: {report.error}. Fix the input and submit a new job.")
        if report.state == "COMPLETED":  # finished between the two calls
            fetched = await rt.upstream.result(endpoint_id, request_id)
        if fetched.output is None:
            answer = _status_answer(rt, request_id, endpoint_id, report)
            return ResultAnswer(
                request_id=request_id,
                model=endpoint_id,
                done=False,
                status=answer.status,
                queue_position=answer.queue_position,
                logs=answer.logs,
                next=f"Not finished yet ({answer.status}); this is not an error. {answer.next}",
            )
    media = find_media(fetched.output)
    return ResultAnswer(
        request_id=request_id,
        model=endpoint_id,
        done=True,
        status="COMPLETED",
        output=fetched.output,
        media=media,
        next="Done. Show the user the media URLs" if media else "Done.",
    )


def _resolve(rt: Runtime, request_id: str, model: str | None) -> tuple[str, str]:
    request_id = validate_request_id(request_id)
    if model:
        return request_id, normalize_endpoint_id(model)
    record = rt.jobs.get(request_id)
    if record is None:
        raise InvalidRequestError(
            f"This server has no record of request {request_id}: pass model= with the endpoint id it was "
            "submitted to (e.g. 'fal-ai/kling-video/v2.1/standard/image-to-video')."
        )
    return request_id, record.endpoint_id


def _status_answer(rt: Runtime, request_id: str, endpoint_id: str, report: StatusReport) -> StatusAnswer:
    record = rt.jobs.get(request_id)
    if record is not None:
        record.add_logs(report.logs)
        lines = list(record.logs)
    else:
        lines = list(report.logs)
    limit = rt.settings.max_log_lines
    logs = [line.message for line in lines[-limit:]] if limit else []
    elapsed = round(time.time() - record.submitted_at, 1) if record is not None else None
    outcome: Outcome
    if report.failed:
        outcome, hint = "failed", f"The job failed: {report.error}. Fix the input and submit a new job."
    elif report.state == "COMPLETED":
        outcome, hint = "succeeded", f"Done: call get_fal_result(request_id='{request_id}') for the output."
    else:
        position = f" (queue position {report.queue_position})" if report.queue_position is not None else ""
        outcome = "pending"
        hint = (
            f"{'Queued' + position if report.state == 'IN_QUEUE' else 'Running'}: call get_fal_result again in "
            f"about {POLL_HINT_SECONDS} seconds."
        )
    return StatusAnswer(
        request_id=request_id,
        model=endpoint_id,
        status=report.state,
        outcome=outcome,
        queue_position=report.queue_position,
        logs=logs,
        elapsed_seconds=elapsed,
        error=report.error,
        error_type=report.error_type,
        next=hint,
    )

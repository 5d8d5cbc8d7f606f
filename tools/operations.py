"""What each tool does, free of MCP: validate, call the upstream, shape the answer.

Failures are raised as `FalError` / `InvalidIdError` / `InputInvalidError`; the MCP layer turns them into
`isError` results.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from server.errors import InvalidRequestError, JobFailedError, NotFoundError
from server.ids import normalize_endpoint_id, validate_request_id
from server.runtime import Runtime
from server.upstream import StatusReport
from server.waiting import WaitLimits
from tools.answers import CancelAnswer, Outcome, ResultAnswer, StatusAnswer, SubmitAnswer
from tools.file_inputs import convert_local_fields
from tools.media import find_media
from tools.validation import check_input

# (elapsed seconds, total seconds, message): how a wait reports progress to whoever listens.
Progress = Callable[[float, float, str], Awaitable[None]]


async def submit(rt: Runtime, model: str, params: dict[str, Any]) -> SubmitAnswer:
    endpoint_id = normalize_endpoint_id(model)
    if not isinstance(params, dict):
        raise InvalidRequestError('input must be a JSON object of the model\'s parameters, e.g. {"prompt": "..."}')
    checked = check_input(endpoint_id, params)
    body, file_notes = await convert_local_fields(rt, checked.entry, checked.body)
    receipt = await rt.upstream.submit(endpoint_id, body)
    rt.jobs.remember(receipt.request_id, endpoint_id)
    return SubmitAnswer(
        request_id=receipt.request_id,
        model=endpoint_id,
        status=receipt.status,
        queue_position=receipt.queue_position,
        validated=checked.entry is not None,
        notes=checked.notes + file_notes,
        next=(
            f"Submitted; video jobs take 1-5 minutes. Call get_fal_result(request_id='{receipt.request_id}', "
            f"wait_seconds={rt.settings.max_wait_seconds:.0f}) to wait for it with progress (repeat while done is "
            "false), or get_fal_status for a quick look."
        ),
    )


async def status(rt: Runtime, request_id: str, model: str | None) -> StatusAnswer:
    request_id, endpoint_id = _resolve(rt, request_id, model)
    report = await rt.upstream.status(endpoint_id, request_id)
    return _status_answer(rt, request_id, endpoint_id, report)


async def result(
    rt: Runtime, request_id: str, model: str | None, wait_seconds: float = 0.0, progress: Progress | None = None
) -> ResultAnswer:
    request_id, endpoint_id = _resolve(rt, request_id, model)
    wait = min(max(wait_seconds, 0.0), rt.settings.max_wait_seconds)
    if wait > 0:
        report = await _wait(rt, request_id, endpoint_id, wait, progress)
        if report is not None and report.failed:
            raise JobFailedError(f"The job failed: {report.error}. Fix the input and submit a new job.")
        if report is None or report.state != "COMPLETED":
            return _still_running(rt, request_id, endpoint_id, report, waited=wait)
    fetched = await rt.upstream.result(endpoint_id, request_id)
    if fetched.output is None:
        report = await rt.upstream.status(endpoint_id, request_id)
        if report.failed:
            raise JobFailedError(f"The job failed: {report.error}. Fix the input and submit a new job.")
        if report.state == "COMPLETED":  # finished between the two calls
            fetched = await rt.upstream.result(endpoint_id, request_id)
        if fetched.output is None:
            return _still_running(rt, request_id, endpoint_id, report, waited=wait)
    media = find_media(fetched.output)
    return ResultAnswer(
        request_id=request_id,
        model=endpoint_id,
        done=True,
        status="COMPLETED",
        output=fetched.output,
        media=media,
        next="Done. Show the user the media URLs." if media else "Done.",
    )


async def cancel(rt: Runtime, request_id: str, model: str | None) -> CancelAnswer:
    request_id, endpoint_id = _resolve(rt, request_id, model)
    outcome = await rt.upstream.cancel(endpoint_id, request_id)
    if outcome == "not_found":
        raise NotFoundError(
            f"The upstream does not know request {request_id} at {endpoint_id}, so nothing was cancelled: "
            "check the id and the model."
        )
    message = (
        "Cancellation requested: the job stops if it has not finished yet; get_fal_result will then report it "
        "as cancelled."
        if outcome == "requested"
        else "The job had already completed, so there was nothing to cancel; get_fal_result returns its output."
    )
    return CancelAnswer(request_id=request_id, model=endpoint_id, outcome=outcome, message=message)


async def _wait(
    rt: Runtime, request_id: str, endpoint_id: str, seconds: float, progress: Progress | None
) -> StatusReport | None:
    limits = WaitLimits(
        seconds=seconds,
        poll_first_interval=rt.settings.poll_first_interval,
        poll_max_interval=rt.settings.poll_max_interval,
        heartbeat=rt.settings.progress_interval,
    )

    async def on_update(report: StatusReport | None, elapsed: float) -> None:
        record = rt.jobs.get(request_id)
        if record is not None and report is not None:
            record.add_logs(report.logs)
        if progress is not None:
            await progress(elapsed, seconds, _progress_message(rt, request_id, report))

    return await rt.waiter.wait(endpoint_id, request_id, limits, on_update)


def _progress_message(rt: Runtime, request_id: str, report: StatusReport | None) -> str:
    record = rt.jobs.get(request_id)
    age = f" ({time.time() - record.submitted_at:.0f} s since submit)" if record is not None else ""
    if report is None:
        return "Waiting for the job's first status" + age
    if report.state == "IN_QUEUE":
        position = f", position {report.queue_position}" if report.queue_position is not None else ""
        return f"Queued{position}{age}"
    if report.state == "IN_PROGRESS":
        latest = record.logs[-1].message if record is not None and record.logs else None
        latest = latest or (report.logs[-1].message if report.logs else None)
        return f"Running{age}" + (f": {latest}" if latest else "")
    return "Failed" if report.failed else "Completed"


def _still_running(
    rt: Runtime, request_id: str, endpoint_id: str, report: StatusReport | None, *, waited: float
) -> ResultAnswer:
    if report is None:
        return ResultAnswer(
            request_id=request_id,
            model=endpoint_id,
            done=False,
            status="IN_QUEUE",
            next=f"No status yet after waiting {waited:.0f} s; this is not an error. Call get_fal_result again.",
        )
    answer = _status_answer(rt, request_id, endpoint_id, report)
    waited_text = f" after waiting {waited:.0f} s" if waited else ""
    again = f"call get_fal_result(request_id='{request_id}', wait_seconds={rt.settings.max_wait_seconds:.0f})"
    return ResultAnswer(
        request_id=request_id,
        model=endpoint_id,
        done=False,
        status=answer.status,
        queue_position=answer.queue_position,
        logs=answer.logs,
        next=f"Not finished yet ({answer.status}{waited_text}); this is not an error: {again} to keep waiting.",
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
            f"{'Queued' + position if report.state == 'IN_QUEUE' else 'Running'}: call get_fal_result"
            f"(request_id='{request_id}', wait_seconds={rt.settings.max_wait_seconds:.0f}) to wait for it."
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

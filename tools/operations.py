"""What the job tools do, free of MCP: validate, record, call the upstream, shape the answer.

Failures are raised as `FalError` / `InvalidIdError` / `InputInvalidError`; the MCP layer turns them into
`isError` results. Getting results (and waiting for them) is in `tools.results`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from server.errors import InvalidRequestError, NotFoundError
from server.ids import normalize_endpoint_id, validate_request_id
from server.ledger import JobRow
from server.reports import StatusReport
from server.runtime import Runtime
from tools import records
from tools.answers import CancelAnswer, Outcome, StatusAnswer, SubmitAnswer
from tools.file_inputs import convert_local_fields
from tools.validation import check_input

# Ledger states that are final: status and result are answered from the ledger, with no upstream request.
FINISHED = frozenset({"completed", "failed", "cancelled"})


async def submit(rt: Runtime, model: str, params: dict[str, Any]) -> SubmitAnswer:
    endpoint_id = normalize_endpoint_id(model)
    if not isinstance(params, dict):
        raise InvalidRequestError('input must be a JSON object of the model\'s parameters, e.g. {"prompt": "..."}')
    _check_limits(rt, params)
    checked = check_input(endpoint_id, params)
    body, file_notes = await convert_local_fields(rt, checked.entry, checked.body)
    async with records.submit_record(rt, endpoint_id, body) as row:
        receipt = await rt.upstream.submit(endpoint_id, body)
        await row.submitted(rt, receipt)
    rt.jobs.remember(receipt.request_id, endpoint_id, submitted_at=time.time())
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


def _check_limits(rt: Runtime, params: dict[str, Any]) -> None:
    """Limits for every model, catalogued or not: what no real request needs is refused before any work."""
    size = len(json.dumps(params, ensure_ascii=False, default=str).encode())
    if size > rt.settings.max_input_bytes:
        raise InvalidRequestError(
            f"input is {size} bytes of JSON, over the {rt.settings.max_input_bytes} allowed "
            "(FAL_MCP_MAX_INPUT_BYTES); pass large files as URLs or local paths, not inline."
        )
    for name in ("prompt", "negative_prompt"):
        value = params.get(name)
        if isinstance(value, str) and len(value) > rt.settings.max_prompt_chars:
            raise InvalidRequestError(
                f"{name} is {len(value)} characters, over the {rt.settings.max_prompt_chars} allowed "
                "(FAL_MCP_MAX_PROMPT_CHARS); shorten it."
            )


async def status(rt: Runtime, request_id: str, model: str | None) -> StatusAnswer:
    request_id = validate_request_id(request_id)
    record = rt.jobs.get(request_id)
    if record is not None and not record.finished:
        # The common case, a job this process follows: ask the upstream straight away (status is polled often,
        # and the ledger is only needed once the upstream no longer knows the job).
        endpoint_id = normalize_endpoint_id(model) if model else record.endpoint_id
        try:
            report = await rt.upstream.status(endpoint_id, request_id)
        except NotFoundError:
            row = await rt.db(rt.ledger.get, request_id)
            if row is not None and row.state in FINISHED:
                return recorded_status(rt, row)
            raise
        return status_answer(rt, request_id, endpoint_id, report, None)
    request_id, endpoint_id, row = await resolve(rt, request_id, model)
    if row is not None and row.state in FINISHED:
        return recorded_status(rt, row)
    report = await rt.upstream.status(endpoint_id, request_id)
    return status_answer(rt, request_id, endpoint_id, report, row)


async def cancel(rt: Runtime, request_id: str, model: str | None) -> CancelAnswer:
    request_id, endpoint_id, _ = await resolve(rt, request_id, model)
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


async def resolve(rt: Runtime, request_id: str, model: str | None) -> tuple[str, str, JobRow | None]:
    """The request id, its endpoint id (from `model`, or from the ledger for any recorded job) and its row."""
    request_id = validate_request_id(request_id)
    row = await rt.db(rt.ledger.get, request_id)
    if model:
        return request_id, normalize_endpoint_id(model), row
    if row is None:
        raise InvalidRequestError(
            f"No job with request id {request_id} is recorded here: pass model= with the endpoint id it was "
            "submitted to (e.g. 'fal-ai/kling-video/v2.1/standard/image-to-video'), or check list_fal_jobs."
        )
    return request_id, row.endpoint_id, row


def recorded_status(rt: Runtime, row: JobRow) -> StatusAnswer:
    assert row.request_id is not None
    failed = row.state != "completed"
    record = rt.jobs.get(row.request_id)  # logs seen by this process, if it followed the job
    limit = rt.settings.max_log_lines
    logs = [line.message for line in list(record.logs)[-limit:]] if record is not None and limit else []
    return StatusAnswer(
        request_id=row.request_id,
        model=row.endpoint_id,
        status="COMPLETED",
        outcome="failed" if failed else "succeeded",
        logs=logs,
        elapsed_seconds=round(time.time() - row.submitted_at, 1),
        error=row.error if failed else None,
        error_type="cancelled" if row.state == "cancelled" else None,
        next=(
            f"The job {row.state}: {row.error}"
            if failed
            else f"Done: call get_fal_result(request_id='{row.request_id}') for the output (kept here)."
        ),
    )


def status_answer(
    rt: Runtime, request_id: str, endpoint_id: str, report: StatusReport, row: JobRow | None
) -> StatusAnswer:
    record = rt.jobs.get(request_id)
    if record is None:
        # Known from the ledger (another process, or before a restart): its submit time is kept there.
        record = rt.jobs.remember(request_id, endpoint_id, row.submitted_at if row else None)
    record.add_logs(report.logs)
    limit = rt.settings.max_log_lines
    logs = [line.message for line in list(record.logs)[-limit:]] if limit else []
    elapsed = round(time.time() - record.submitted_at, 1) if record.submitted_at is not None else None
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

"""Following a submitted job, free of MCP: its status, its result (waiting for it if asked), cancelling it.

A result is kept in the ledger the first time it is seen and served from there afterwards, so it survives
fal's short retention; a job whose outcome is kept is answered with no upstream request. Failures are raised
as `FalError` / `InvalidIdError`; a failed or cancelled job is `JobFailedError`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from server.errors import InvalidRequestError, JobFailedError, NotFoundError
from server.jobs.following import follow, following
from server.jobs.keeping import FINISHED
from server.jobs.ledger import JobRow
from server.jobs.waiting import WaitLimits
from server.upstream.ids import normalize_endpoint_id, validate_request_id
from server.upstream.reports import ResultReport, StatusReport
from server.upstream.routes import media_of
from tools.answers import CancelAnswer, Cost, Outcome, ResultAnswer, StatusAnswer
from tools.history import cost_of
from tools.saving import save_media

if TYPE_CHECKING:
    from server.runtime import Runtime

# (elapsed seconds, total seconds, message): how a wait reports progress to whoever listens.
Progress = Callable[[float, float, str], Awaitable[None]]


# ---- status --------------------------------------------------------------------------------------------------


async def status(rt: Runtime, request_id: str, model: str | None) -> StatusAnswer:
    request_id = validate_request_id(request_id)
    record = rt.jobs.memory.get(request_id)
    if record is not None and not record.finished:
        # The common case, a job this process follows: ask the upstream straight away (status is polled often,
        # and the ledger is only needed once the upstream no longer knows the job).
        endpoint_id = normalize_endpoint_id(model) if model else record.endpoint_id
        try:
            report = await rt.upstream.status(endpoint_id, request_id)
        except NotFoundError:
            row = await rt.jobs.get(request_id)
            if row is not None and row.state in FINISHED:
                return _recorded_status(rt, row)
            raise
        return _status_answer(rt, request_id, endpoint_id, report, None)
    request_id, endpoint_id, row = await _resolve(rt, request_id, model)
    if row is not None and row.state in FINISHED:
        return _recorded_status(rt, row)
    report = await rt.upstream.status(endpoint_id, request_id)
    return _status_answer(rt, request_id, endpoint_id, report, row)


# ---- result --------------------------------------------------------------------------------------------------


async def result(
    rt: Runtime,
    request_id: str,
    model: str | None,
    wait_seconds: float = 0.0,
    progress: Progress | None = None,
    download: bool = False,
) -> ResultAnswer:
    # While this call follows the job (waiting, fetching, keeping the result) the watcher leaves it alone, and
    # a wait holds the job's lease, so no other instance follows it meanwhile.
    async with following(rt.jobs, request_id):
        answer = await _result(rt, request_id, model, wait_seconds, progress)
    if download and answer.done:
        saved, problems, where = await save_media(rt, answer.request_id, answer.media)
        saved_text = f" Saved {len(saved)} file(s) under {where}." if saved else ""
        trouble = f" {len(problems)} download(s) failed (see download_problems)." if problems else ""
        answer = answer.model_copy(
            update={"downloads": saved, "download_problems": problems, "next": answer.next + saved_text + trouble}
        )
    return answer


async def _result(
    rt: Runtime, request_id: str, model: str | None, wait_seconds: float, progress: Progress | None
) -> ResultAnswer:
    request_id, endpoint_id, row = await _resolve(rt, request_id, model)
    if (kept := _kept_outcome(request_id, endpoint_id, row)) is not None:
        return kept
    wait = min(max(wait_seconds, 0.0), rt.settings.max_wait_seconds)
    if wait > 0:
        followed = await _wait(rt, request_id, endpoint_id, wait, progress)
        if isinstance(followed, JobRow):  # another instance kept the outcome meanwhile
            kept = _kept_outcome(request_id, endpoint_id, followed)
            if kept is not None:
                return kept
        report = followed if isinstance(followed, StatusReport) else None
        if report is not None and report.failed:
            failure = _failure(report)
            await rt.jobs.keep_failure(request_id, failure)
            raise failure
        if report is None or report.state != "COMPLETED":
            return _still_running(rt, request_id, endpoint_id, report, row, waited=wait)
    fetched = await _fetch(rt, request_id, endpoint_id, row, wait)
    if isinstance(fetched, ResultAnswer):
        return fetched
    assert fetched.output is not None
    billed = await rt.jobs.keep_output(request_id, fetched.output, fetched.billable_units)
    cost = Cost(usd=billed, kind="billed") if billed is not None else cost_of(row)
    return _done(request_id, endpoint_id, fetched.output, kept=False, cost=cost)


def kept_result(row: JobRow) -> ResultAnswer:
    """The answer `get_fal_result` gives for a job whose outcome the ledger keeps, with no upstream request (a failed
    or cancelled job raises `JobFailedError`, as there)."""
    assert row.request_id is not None and row.state in FINISHED
    kept = _kept_outcome(row.request_id, row.endpoint_id, row)
    if kept is None:  # finished with no result (a 'rejected' submit never reaches here): say so, as an error
        raise JobFailedError(f"The job {row.state}: {row.error or 'no result was kept'}")
    return kept


def latest_log(rt: Runtime, request_id: str) -> str | None:
    """The latest log line this process has seen for the job, if any."""
    record = rt.jobs.memory.get(request_id)
    return record.logs[-1].message if record is not None and record.logs else None


def _kept_outcome(request_id: str, endpoint_id: str, row: JobRow | None) -> ResultAnswer | None:
    """The answer for a job whose outcome the ledger keeps (a failure is raised); None while it has none."""
    if row is not None and row.state == "completed" and row.result is not None:
        return _done(request_id, endpoint_id, row.result, kept=True, cost=cost_of(row))
    if row is not None and row.state in ("failed", "cancelled"):
        raise JobFailedError(f"The job {row.state}: {row.error}")
    return None


async def _fetch(
    rt: Runtime, request_id: str, endpoint_id: str, row: JobRow | None, waited: float
) -> ResultReport | ResultAnswer:
    """The upstream's result (with an output), or a still-running answer; failures are recorded and raised."""
    try:
        fetched = await rt.upstream.result(endpoint_id, request_id)
        if fetched.output is not None:
            return fetched
        report = await rt.upstream.status(endpoint_id, request_id)
        if report.failed:
            raise _failure(report)
        if report.state == "COMPLETED":  # finished between the two calls
            fetched = await rt.upstream.result(endpoint_id, request_id)
            if fetched.output is not None:
                return fetched
        return _still_running(rt, request_id, endpoint_id, report, row, waited=waited)
    except JobFailedError as failure:
        await rt.jobs.keep_failure(request_id, failure)
        raise
    except NotFoundError:
        if row is not None:
            raise NotFoundError(
                f"The upstream no longer has request {request_id} (fal keeps results about an hour, less for large "
                "ones) and this server did not get to keep its result. Submit the job again if you still need it."
            ) from None
        raise


async def _wait(
    rt: Runtime, request_id: str, endpoint_id: str, seconds: float, progress: Progress | None
) -> StatusReport | JobRow | None:
    record = rt.jobs.memory.get(request_id)
    age = time.time() - record.submitted_at if record is not None and record.submitted_at is not None else None
    limits = WaitLimits(
        seconds=seconds,
        poll_first_interval=rt.settings.poll_first_interval,
        poll_max_interval=rt.settings.poll_max_interval,
        heartbeat=rt.settings.progress_interval,
        first_poll_delay=max(0.0, rt.settings.poll_first_interval - age) if age is not None else 0.0,
    )

    async def on_update(report: StatusReport | None, elapsed: float) -> None:
        record = rt.jobs.memory.get(request_id)
        if record is not None and report is not None:
            record.add_logs(report.logs)
        if progress is not None:
            await progress(elapsed, seconds, _progress_message(rt, request_id, report))

    return await follow(
        rt.jobs, rt.waiter, endpoint_id, request_id, limits, on_update, lease_seconds=rt.settings.watch_lease
    )


# ---- cancel --------------------------------------------------------------------------------------------------


async def cancel(rt: Runtime, request_id: str, model: str | None) -> CancelAnswer:
    request_id, endpoint_id, _ = await _resolve(rt, request_id, model)
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


# ---- shared --------------------------------------------------------------------------------------------------


async def _resolve(rt: Runtime, request_id: str, model: str | None) -> tuple[str, str, JobRow | None]:
    """The request id, its endpoint id (from `model`, or from the ledger for any recorded job) and its row."""
    request_id = validate_request_id(request_id)
    row = await rt.jobs.get(request_id)
    if model:
        return request_id, normalize_endpoint_id(model), row
    if row is None:
        raise InvalidRequestError(
            f"No job with request id {request_id} is recorded here: pass model= with the endpoint id it was "
            "submitted to (e.g. 'fal-ai/kling-video/v2.1/standard/image-to-video'), or check list_fal_jobs."
        )
    return request_id, row.endpoint_id, row


def _recent_logs(rt: Runtime, request_id: str) -> list[str]:
    """The latest log lines this process has seen for the job, oldest first."""
    record = rt.jobs.memory.get(request_id)
    limit = rt.settings.max_log_lines
    return [line.message for line in list(record.logs)[-limit:]] if record is not None and limit else []


def _recorded_status(rt: Runtime, row: JobRow) -> StatusAnswer:
    assert row.request_id is not None
    failed = row.state != "completed"
    return StatusAnswer(
        request_id=row.request_id,
        model=row.endpoint_id,
        status="COMPLETED",
        outcome="failed" if failed else "succeeded",
        logs=_recent_logs(rt, row.request_id),
        elapsed_seconds=round(time.time() - row.submitted_at, 1),
        error=row.error if failed else None,
        error_type="cancelled" if row.state == "cancelled" else None,
        next=(
            f"The job {row.state}: {row.error}"
            if failed
            else f"Done: call get_fal_result(request_id='{row.request_id}') for the output (kept here)."
        ),
    )


def _status_answer(
    rt: Runtime, request_id: str, endpoint_id: str, report: StatusReport, row: JobRow | None
) -> StatusAnswer:
    record = rt.jobs.memory.get(request_id)
    if record is None:
        # Known from the ledger (another process, or before a restart): its submit time is kept there.
        record = rt.jobs.memory.remember(request_id, endpoint_id, row.submitted_at if row else None)
    record.add_logs(report.logs)
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
        logs=_recent_logs(rt, request_id),
        elapsed_seconds=elapsed,
        error=report.error,
        error_type=report.error_type,
        next=hint,
    )


def _failure(report: StatusReport) -> JobFailedError:
    return JobFailedError(
        f"The job failed: {report.error}. Fix the input and submit a new job.", error_type=report.error_type
    )


def _done(request_id: str, endpoint_id: str, output: dict[str, Any], *, kept: bool, cost: Cost | None) -> ResultAnswer:
    media = media_of(endpoint_id, output)
    source = " (served from this server's ledger)" if kept else ""
    return ResultAnswer(
        request_id=request_id,
        model=endpoint_id,
        done=True,
        status="COMPLETED",
        output=output,
        media=media,
        cost=cost,
        next=(f"Done{source}. Show the user the media URLs." if media else f"Done{source}."),
    )


def _progress_message(rt: Runtime, request_id: str, report: StatusReport | None) -> str:
    record = rt.jobs.memory.get(request_id)
    age = ""
    if record is not None and record.submitted_at is not None:
        age = f" ({time.time() - record.submitted_at:.0f} s since submit)"
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
    rt: Runtime,
    request_id: str,
    endpoint_id: str,
    report: StatusReport | None,
    row: JobRow | None,
    *,
    waited: float,
) -> ResultAnswer:
    if report is None:
        return ResultAnswer(
            request_id=request_id,
            model=endpoint_id,
            done=False,
            next=f"No status yet after waiting {waited:.0f} s; this is not an error. Call get_fal_result again.",
        )
    answer = _status_answer(rt, request_id, endpoint_id, report, row)
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

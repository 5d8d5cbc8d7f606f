"""get_fal_result's work, free of MCP: serve a kept result, or fetch it (waiting if asked), keep it, answer.

A result is stored in the ledger the first time it is seen and served from there afterwards, so it survives
fal's short retention. A failed or cancelled job is raised as `JobFailedError`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from server.errors import JobFailedError, NotFoundError
from server.ledger import JobRow
from server.reports import StatusReport
from server.runtime import Runtime
from server.waiting import WaitLimits
from tools import records
from tools.answers import ResultAnswer
from tools.media import find_media
from tools.operations import resolve, status_answer
from tools.saving import download_dir, save_media

# (elapsed seconds, total seconds, message): how a wait reports progress to whoever listens.
Progress = Callable[[float, float, str], Awaitable[None]]


async def result(
    rt: Runtime,
    request_id: str,
    model: str | None,
    wait_seconds: float = 0.0,
    progress: Progress | None = None,
    download: bool = False,
) -> ResultAnswer:
    # While this call follows the job (waiting, fetching, keeping the result) the watcher leaves it alone.
    rt.waits.add(request_id)
    try:
        answer = await _result(rt, request_id, model, wait_seconds, progress)
    finally:
        rt.waits.discard(request_id)
    if download and answer.done:
        saved, problems = await save_media(rt, answer.request_id, answer.media)
        where = f" Saved {len(saved)} file(s) under {download_dir(rt)}." if saved else ""
        trouble = f" {len(problems)} download(s) failed (see download_problems)." if problems else ""
        answer = answer.model_copy(
            update={"downloads": saved, "download_problems": problems, "next": answer.next + where + trouble}
        )
    return answer


async def _result(
    rt: Runtime, request_id: str, model: str | None, wait_seconds: float, progress: Progress | None
) -> ResultAnswer:
    request_id, endpoint_id, row = await resolve(rt, request_id, model)
    if row is not None and row.state == "completed" and row.result is not None:
        return _done(request_id, endpoint_id, row.result, kept=True)
    if row is not None and row.state in ("failed", "cancelled"):
        raise JobFailedError(f"The job {row.state}: {row.error}")
    wait = min(max(wait_seconds, 0.0), rt.settings.max_wait_seconds)
    if wait > 0:
        report = await _wait(rt, request_id, endpoint_id, wait, progress)
        if report is not None and report.failed:
            failure = _failure(report)
            await records.keep_failure(rt, request_id, failure)
            raise failure
        if report is None or report.state != "COMPLETED":
            return _still_running(rt, request_id, endpoint_id, report, row, waited=wait)
    output = await _fetch(rt, request_id, endpoint_id, row, wait)
    if isinstance(output, ResultAnswer):
        return output
    await records.keep_output(rt, request_id, output)
    return _done(request_id, endpoint_id, output, kept=False)


async def _fetch(
    rt: Runtime, request_id: str, endpoint_id: str, row: JobRow | None, waited: float
) -> dict[str, Any] | ResultAnswer:
    """The output from the upstream, or a still-running answer; failures are recorded and raised."""
    try:
        fetched = await rt.upstream.result(endpoint_id, request_id)
        if fetched.output is not None:
            return fetched.output
        report = await rt.upstream.status(endpoint_id, request_id)
        if report.failed:
            raise _failure(report)
        if report.state == "COMPLETED":  # finished between the two calls
            fetched = await rt.upstream.result(endpoint_id, request_id)
            if fetched.output is not None:
                return fetched.output
        return _still_running(rt, request_id, endpoint_id, report, row, waited=waited)
    except JobFailedError as failure:
        await records.keep_failure(rt, request_id, failure)
        raise
    except NotFoundError:
        if row is not None:
            raise NotFoundError(
                f"The upstream no longer has request {request_id} (fal keeps results about an hour, less for large "
                "ones) and this server did not get to keep its result. Submit the job again if you still need it."
            ) from None
        raise


def _failure(report: StatusReport) -> JobFailedError:
    return JobFailedError(
        f"The job failed: {report.error}. Fix the input and submit a new job.", error_type=report.error_type
    )


def _done(request_id: str, endpoint_id: str, output: dict[str, Any], *, kept: bool) -> ResultAnswer:
    media = find_media(output)
    source = " (served from this server's ledger)" if kept else ""
    return ResultAnswer(
        request_id=request_id,
        model=endpoint_id,
        done=True,
        status="COMPLETED",
        output=output,
        media=media,
        next=(f"Done{source}. Show the user the media URLs." if media else f"Done{source}."),
    )


async def _wait(
    rt: Runtime, request_id: str, endpoint_id: str, seconds: float, progress: Progress | None
) -> StatusReport | None:
    record = rt.jobs.get(request_id)
    age = time.time() - record.submitted_at if record is not None and record.submitted_at is not None else None
    limits = WaitLimits(
        seconds=seconds,
        poll_first_interval=rt.settings.poll_first_interval,
        poll_max_interval=rt.settings.poll_max_interval,
        heartbeat=rt.settings.progress_interval,
        first_poll_delay=max(0.0, rt.settings.poll_first_interval - age) if age is not None else 0.0,
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
    answer = status_answer(rt, request_id, endpoint_id, report, row)
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

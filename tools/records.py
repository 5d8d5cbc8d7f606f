"""Keeping jobs in the ledger: what is recorded around a submit, results and failures, listing, and the watcher's
check of one unfinished job. Protocol-free; every ledger call runs in a worker thread (`Runtime.db`).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio

from server.errors import FalError, InvalidRequestError, JobFailedError, SubmitOutcomeUnknownError, redact
from server.ids import normalize_endpoint_id
from server.ledger import STATES, JobRow
from server.reports import SubmitReceipt
from server.runtime import Runtime
from tools.answers import MAX_LIST_LIMIT, JobList, JobSummary
from tools.media import find_media

_DATA_URI = re.compile(r"^data:([\w.+/-]*)(;base64)?,", re.IGNORECASE)


@asynccontextmanager
async def submit_record(rt: Runtime, endpoint_id: str, body: dict[str, Any]) -> AsyncIterator[RowHandle]:
    """Write the job's row before the submit is sent, and settle it whatever happens to the submit.

    Outcome unknown (a timeout, a dropped answer, or this call being cancelled mid-way) stays recorded as
    'unknown' with what was sent and when; a definite refusal is 'rejected'. Nothing is ever re-sent.
    """
    handle = RowHandle(await rt.db(rt.ledger.begin_submit, endpoint_id, stored_input(body, rt.settings.secrets())))
    try:
        yield handle
    except SubmitOutcomeUnknownError as exc:
        await _settle(rt, rt.ledger.mark_unknown, handle.row_id, str(exc))
        exc.message = f"{exc.message} It is recorded as job #{handle.row_id} with status 'unknown' (see list_fal_jobs)."
        exc.args = (exc.message,)
        raise
    except FalError as exc:
        await _settle(rt, rt.ledger.mark_rejected, handle.row_id, str(exc))
        raise
    except BaseException:
        await _settle(rt, rt.ledger.mark_unknown, handle.row_id, "the submit was interrupted before an answer came")
        raise


class RowHandle:
    def __init__(self, row_id: int) -> None:
        self.row_id = row_id

    async def submitted(self, rt: Runtime, receipt: SubmitReceipt) -> None:
        with anyio.CancelScope(shield=True):  # the upstream accepted it: the id must be kept
            await rt.db(rt.ledger.mark_submitted, self.row_id, receipt.request_id, receipt.queue_position)


async def _settle(rt: Runtime, mark: Any, row_id: int, reason: str) -> None:
    with anyio.CancelScope(shield=True):
        await rt.db(mark, row_id, reason)


def stored_input(body: dict[str, Any], secrets: list[str]) -> dict[str, Any]:
    """What the ledger keeps of an input: data URIs shortened to a placeholder, any key text removed."""

    def shorten(value: Any) -> Any:
        if isinstance(value, str):
            match = _DATA_URI.match(value)
            if match:
                return f"data:{match.group(1)}{match.group(2) or ''},… ({len(value)} characters, not kept)"
            return value
        if isinstance(value, list):
            return [shorten(item) for item in value]
        if isinstance(value, dict):
            return {key: shorten(item) for key, item in value.items()}
        return value

    text = json.dumps(shorten(body), ensure_ascii=False)
    for secret in secrets:
        text = redact(text, secret)
    kept: dict[str, Any] = json.loads(text)
    return kept


async def keep_output(rt: Runtime, request_id: str, output: dict[str, Any]) -> None:
    """Store a result the first time it is seen; too large a result keeps just its media URLs."""
    urls = [media.url for media in find_media(output)]
    size = len(json.dumps(output, ensure_ascii=False).encode())
    kept = output
    if size > rt.settings.max_stored_result_bytes:
        kept = {"_note": f"result of {size} bytes not kept (FAL_MCP_MAX_STORED_RESULT_BYTES)", "media_urls": urls}
    with anyio.CancelScope(shield=True):
        await rt.db(rt.ledger.store_result, request_id, kept, urls)
    _finished(rt, request_id)


async def keep_failure(rt: Runtime, request_id: str, error: JobFailedError) -> None:
    with anyio.CancelScope(shield=True):
        await rt.db(rt.ledger.mark_failed, request_id, error.message, cancelled=error.error_type == "cancelled")
    _finished(rt, request_id)


def _finished(rt: Runtime, request_id: str) -> None:
    record = rt.jobs.get(request_id)
    if record is not None:
        record.finished = True


async def refresh(rt: Runtime, row: JobRow) -> bool:
    """The watcher's check of one unfinished job: True once its outcome is stored."""
    assert row.request_id is not None
    report = await rt.upstream.status(row.endpoint_id, row.request_id, with_logs=False)
    if report.state != "COMPLETED":
        return False
    if report.failed:
        failure = JobFailedError(f"The job failed: {report.error}", error_type=report.error_type)
        await keep_failure(rt, row.request_id, failure)
        return True
    try:
        fetched = await rt.upstream.result(row.endpoint_id, row.request_id)
    except JobFailedError as exc:
        await keep_failure(rt, row.request_id, exc)
        return True
    if fetched.output is None:
        return False
    await keep_output(rt, row.request_id, fetched.output)
    return True


async def list_jobs(rt: Runtime, status: str | None, model: str | None, since: str | None, limit: int) -> JobList:
    if status is not None and status not in STATES:
        raise InvalidRequestError(f"status must be one of {', '.join(sorted(STATES))}; you sent {status!r}")
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidRequestError(f"limit must be between 1 and {MAX_LIST_LIMIT}; you sent {limit}")
    endpoint_id = normalize_endpoint_id(model) if model else None
    rows = await rt.db(rt.ledger.list_jobs, state=status, endpoint_id=endpoint_id, since=_since(since), limit=limit)
    jobs = [summarize(row) for row in rows]
    hint = (
        "get_fal_result(request_id) returns a job's output, from the ledger when the upstream no longer has it."
        if jobs
        else "No recorded jobs match."
    )
    return JobList(count=len(jobs), jobs=jobs, next=hint)


def summarize(row: JobRow) -> JobSummary:
    return JobSummary(
        request_id=row.request_id,
        model=row.endpoint_id,
        status=row.state,
        submitted_at=datetime.fromtimestamp(row.submitted_at, UTC).isoformat(timespec="seconds"),
        error=row.error,
        media_urls=row.media_urls,
        downloads=[str(d.get("path")) for d in row.downloads],
    )


def job_document(row: JobRow) -> dict[str, Any]:
    """Everything recorded about one job, for the fal://jobs/{request_id} resource."""
    document = summarize(row).model_dump(mode="json", exclude_none=True)
    document.update(input=row.input, result=row.result, downloads=row.downloads, queue_position=row.queue_position)
    return document


def _since(value: str | None) -> float | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequestError(
            f"since must be an ISO 8601 date or time such as '2026-11-25' or '2026-11-25T14:00:00Z'; you sent {value!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()

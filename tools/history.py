"""The jobs recorded in the ledger, as the assistant sees them: listing with filters, and one job's document.

Free of MCP; answers come from the ledger alone (no upstream request).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from server.errors import InvalidRequestError
from server.jobs.ledger import STATES
from server.upstream.ids import normalize_endpoint_id
from tools.answers import MAX_LIST_LIMIT, Cost, JobList, JobSummary

if TYPE_CHECKING:
    from server.jobs.ledger import JobRow
    from server.runtime import Runtime


async def list_jobs(rt: Runtime, status: str | None, model: str | None, since: str | None, limit: int) -> JobList:
    # "" means absent, as for the other filters: strict-mode clients must send every field, so they send "".
    status = status or None
    if status is not None and status not in STATES:
        raise InvalidRequestError(f"status must be one of {', '.join(sorted(STATES))}; you sent {status!r}")
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidRequestError(f"limit must be between 1 and {MAX_LIST_LIMIT}; you sent {limit}")
    endpoint_id = normalize_endpoint_id(model) if model else None
    rows = await rt.jobs.list(state=status, endpoint_id=endpoint_id, since=_since(since), limit=limit)
    jobs = [summarize(row) for row in rows]
    hint = (
        "get_fal_result(request_id) returns a job's output, from the ledger when the upstream no longer has it."
        if jobs
        else "No recorded jobs match."
    )
    return JobList(count=len(jobs), jobs=jobs, spend=await spend_line(rt), next=hint)


async def spend_line(rt: Runtime) -> str | None:
    """One line of what was spent today and this month (and what is left of a daily budget), from the ledger alone:
    the balance is asked only by fal://spend. None while nothing was spent and no budget is set."""
    summary = await rt.money.summary(ask_balance=False)
    if summary.month_usd == 0 and summary.daily_budget is None:
        return None
    return summary.line()


def summarize(row: JobRow) -> JobSummary:
    return JobSummary(
        request_id=row.request_id,
        model=row.endpoint_id,
        status=row.state,
        submitted_at=datetime.fromtimestamp(row.submitted_at, UTC).isoformat(timespec="seconds"),
        error=row.error,
        media_urls=row.media_urls,
        downloads=[str(d.get("path")) for d in row.downloads],
        cost=cost_of(row),
    )


async def spend_document(rt: Runtime) -> dict[str, Any]:
    """What was spent today, this month and by model (this month), the daily budget left and the account's balance
    where the provider tells it, for the fal://spend resource. A balance that cannot be read is left out."""
    summary = await rt.money.summary()
    document = {key: value for key, value in asdict(summary).items() if value is not None}
    return {**document, "summary": summary.line()}


def cost_of(row: JobRow | None) -> Cost | None:
    """The job's cost as the ledger keeps it: billed, or its estimate (held while it runs, kept when no bill was
    told), or nothing for a job that never ran; None when no price was known at submit."""
    if row is None or row.cost_kind is None or row.cost_usd is None:
        return None
    if row.cost_kind == "released":
        return Cost(usd=0.0, kind="released")
    return Cost(usd=row.cost_usd, kind="billed" if row.cost_kind == "billed" else "estimated")


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

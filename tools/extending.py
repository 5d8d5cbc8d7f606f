"""Extending a Luma video: the job to extend is named by its request id in the input (`source_request_id`), and
checked against the ledger before anything is sent: it must be a finished Luma generation this server made."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from server.errors import InvalidRequestError
from server.upstream.ids import LUMA_SOURCE_FIELD as SOURCE_FIELD
from server.upstream.ids import InvalidIdError, route_family_of, validate_request_id

if TYPE_CHECKING:
    from server.runtime import Runtime


async def check_extend_source(rt: Runtime, params: dict[str, Any]) -> None:
    """Refuse, saying what to do, an extend whose source is missing, unknown here, not Luma's, or not finished."""
    source = params.get(SOURCE_FIELD)
    if not isinstance(source, str) or not source.strip():
        raise InvalidRequestError(
            f"luma/generations/extend needs {SOURCE_FIELD}: the request id of the finished luma/generations job to "
            "extend (list_fal_jobs shows them). Nothing was submitted."
        )
    try:
        source = validate_request_id(source)
    except InvalidIdError as exc:
        raise InvalidRequestError(f"{SOURCE_FIELD}: {exc} Nothing was submitted.") from None
    row = await rt.jobs.get(source)
    if row is None:
        raise InvalidRequestError(
            f"No job with request id {source} is recorded here, so it cannot be extended: {SOURCE_FIELD} must be a "
            "luma/generations job made through this server (see list_fal_jobs). Nothing was submitted."
        )
    if route_family_of(row.endpoint_id) != "luma":
        raise InvalidRequestError(
            f"Job {source} was made on {row.endpoint_id}, not on Luma's route, so luma/generations/extend cannot "
            "extend it: pick a luma/generations job (see list_fal_jobs). Nothing was submitted."
        )
    if row.state != "completed":
        raise InvalidRequestError(
            f"Job {source} is {row.state}, not finished: only a completed Luma video can be extended. Wait for it "
            f"with get_fal_result(request_id='{source}', wait_seconds=...) first. Nothing was submitted."
        )

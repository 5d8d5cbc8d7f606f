"""Submitting a job, free of MCP: check the input, turn local files into URLs, record the job, submit once.

Nothing is sent for an input the model would refuse, and a submit is never re-sent: the job's row is written
before the request goes out and settled whatever happens (see `server.jobs.keeping`).
"""

from __future__ import annotations

import json
import math
import time
from typing import TYPE_CHECKING, Any

from server.errors import InvalidRequestError
from server.upstream.ids import LUMA_EXTEND, normalize_endpoint_id
from tools.answers import SubmitAnswer
from tools.catalog.validation import InputInvalidError, review_input
from tools.extending import check_extend_source
from tools.pricing import Consent, cost_estimate, quote_input, require_consent
from tools.uploads import ledger_body, publish_local_files, read_local_files

if TYPE_CHECKING:
    from server.runtime import Runtime
    from tools.catalog.base import CatalogEntry


async def submit(
    rt: Runtime,
    model: str,
    params: dict[str, Any],
    *,
    dry_run: bool = False,
    max_cost_usd: float | None = None,
    consent: Consent = "not_needed",
) -> SubmitAnswer:
    """`consent`: what the person said to the cost, when the MCP layer asked them before this ran (see
    tools.pricing). A dry run checks and prices the input, then stops: nothing is recorded or sent."""
    endpoint_id = normalize_endpoint_id(model)
    rt.upstream.adapter(endpoint_id)  # a route this provider lacks is refused here, before any work
    if not isinstance(params, dict):
        raise InvalidRequestError('input must be a JSON object of the model\'s parameters, e.g. {"prompt": "..."}')
    _check_limits(rt, params)
    checked = review_input(endpoint_id, params)
    files, file_problems = await read_local_files(rt, checked.entry, checked.body)
    if checked.problems or file_problems:  # every problem at once: one round trip to fix them all
        raise InputInvalidError(endpoint_id, checked.problems + file_problems)
    if endpoint_id == LUMA_EXTEND:
        await check_extend_source(rt, params)
    quote = await quote_input(rt, checked)
    charge = rt.money.charge(endpoint_id, quote, max_cost_usd)  # the caps that need no ledger; BudgetError
    price_notes = [f"No cost estimate: {quote.note}."] if quote.estimate is None and quote.note else []
    if dry_run:
        await rt.money.check_day_now(charge)
        return SubmitAnswer(
            model=endpoint_id,
            validated=checked.entry is not None,
            cost_estimate=cost_estimate(quote),
            notes=checked.notes + price_notes,
            next="Dry run: the input is valid and within the caps; nothing was sent. Submit without dry_run to run it.",
        )
    await require_consent(rt, endpoint_id, quote, max_cost_usd, consent)
    warning = await rt.money.balance_warning(quote)
    body, file_notes = await publish_local_files(rt, checked.entry, checked.body, files)
    stored = await ledger_body(body, files)
    async with rt.jobs.submit_record(endpoint_id, body, stored=stored, charge=charge) as row:
        receipt = await rt.upstream.submit(endpoint_id, body)
        await row.submitted(receipt)
    rt.jobs.memory.remember(receipt.request_id, endpoint_id, submitted_at=time.time())
    return SubmitAnswer(
        request_id=receipt.request_id,
        model=endpoint_id,
        status=receipt.status,
        queue_position=receipt.queue_position,
        validated=checked.entry is not None,
        cost_estimate=cost_estimate(quote),
        notes=checked.notes + file_notes + price_notes + ([warning] if warning else []),
        next=(
            f"Submitted; {_how_long(checked.entry)} Call get_fal_result(request_id='{receipt.request_id}', "
            f"wait_seconds={rt.settings.max_wait_seconds:.0f}) to wait for it with progress (repeat while done is "
            "false), or get_fal_status for a quick look."
        ),
    )


def _how_long(entry: CatalogEntry | None) -> str:
    if entry is not None and entry.media_kind == "image":
        return "image jobs take from seconds to a minute."
    return "video jobs take 1-5 minutes."


def _check_limits(rt: Runtime, params: dict[str, Any]) -> None:
    """Limits for every model, catalogued or not: what no real request needs is refused before any work."""
    _check_finite(params)
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


def _check_finite(params: dict[str, Any]) -> None:
    """NaN and Infinity have no JSON spelling: sent on, they would make the body invalid JSON (or a model's
    garbage), so they are refused here, the field named. Iterative: an input may nest deep."""
    pending: list[tuple[str, Any]] = [("input", params)]
    while pending:
        where, value = pending.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidRequestError(
                f"{where} is {value!r}, which is not a JSON number; send a finite number. Nothing was submitted."
            )
        if isinstance(value, dict):
            pending.extend((f"{where}.{key}", item) for key, item in value.items())
        elif isinstance(value, list):
            pending.extend((f"{where}[{index}]", item) for index, item in enumerate(value))

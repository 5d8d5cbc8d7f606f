"""Checking a model's input against its catalogued parameter model, before anything is sent or paid for.

The body sent upstream is exactly what the user gave: validation only decides whether to send it, so
fal's own defaults apply to every field the user left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from server.errors import InvalidRequestError
from tools.catalog import CatalogEntry, lookup

MAX_ERRORS_LISTED = 20


@dataclass(frozen=True)
class CheckedInput:
    endpoint_id: str
    body: dict[str, Any]
    entry: CatalogEntry | None
    notes: list[str] = field(default_factory=list)


class InputInvalidError(InvalidRequestError):
    """The input would be refused by fal; `problems` names every wrong field and what is allowed."""

    def __init__(self, endpoint_id: str, problems: list[str]) -> None:
        self.endpoint_id = endpoint_id
        self.problems = problems
        shown = problems[:MAX_ERRORS_LISTED]
        more = f" (and {len(problems) - len(shown)} more)" if len(problems) > len(shown) else ""
        super().__init__(
            f"Input for {endpoint_id} is invalid, nothing was submitted: "
            + "; ".join(shown)
            + more
            + ". Fix these fields and call submit_fal_job again (describe_fal_model shows every field)."
        )


def check_input(endpoint_id: str, body: dict[str, Any]) -> CheckedInput:
    """Validate `body` for a catalogued endpoint; pass uncatalogued ones through with a note."""
    entry = lookup(endpoint_id)
    if entry is None:
        return CheckedInput(
            endpoint_id,
            body,
            None,
            [f"{endpoint_id} is not in this server's catalog, so its input was sent without local validation."],
        )
    try:
        entry.params.model_validate(body)
    except ValidationError as exc:
        raise InputInvalidError(endpoint_id, [describe_error(e) for e in exc.errors()]) from None
    unknown = sorted(set(body) - set(entry.params.model_fields))
    notes = []
    if unknown:
        notes.append(
            f"Passed through unchanged, not in the catalogued schema of {endpoint_id}: {', '.join(unknown)} "
            "(the model may ignore them)."
        )
    return CheckedInput(endpoint_id, body, entry, notes)


def describe_error(error: ErrorDetails) -> str:
    """One field's problem as a sentence: the field, what is wrong or allowed, and what was sent."""
    where = ".".join(str(part) for part in error["loc"]) or "input"
    if error["type"] == "missing":
        return f"{where} is required"
    sent = _short(error.get("input"))
    return f"{where}: {error['msg'].replace('Input should', 'should')}; you sent {sent}"


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"

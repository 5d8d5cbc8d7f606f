"""Checking a model's input against its catalogued parameter model, before anything is sent or paid for.

The body sent upstream is what the user gave: validation decides whether to send it, so fal's own defaults apply
to every field the user left out. The one change it makes is correcting an obvious type slip (5 for "5", see
`slips`), said in a note.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from server.errors import InvalidRequestError
from tools.catalog import CatalogEntry, lookup
from tools.catalog.base import unlisted_choice_notes
from tools.catalog.slips import correct_slips

MAX_ERRORS_LISTED = 20


@dataclass(frozen=True)
class CheckedInput:
    endpoint_id: str
    body: dict[str, Any]
    entry: CatalogEntry | None
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # empty: the input may be sent


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
    """`review_input`, raising InputInvalidError (every problem named) for an input that must not be sent."""
    checked = review_input(endpoint_id, body)
    if checked.problems:
        raise InputInvalidError(endpoint_id, checked.problems)
    return checked


def review_input(endpoint_id: str, body: dict[str, Any]) -> CheckedInput:
    """Validate `body` for a catalogued endpoint, its obvious type slips corrected (with a note); pass uncatalogued
    ones through with a note. Problems are listed, not raised, so a caller can add its own (local files) and refuse
    once, naming them all."""
    entry = lookup(endpoint_id)
    if entry is None:
        return CheckedInput(
            endpoint_id,
            body,
            None,
            [f"{endpoint_id} is not in this server's catalog, so its input was sent without local validation."],
        )
    errors = _errors(entry.params, body)
    notes: list[str] = []
    if errors:
        body, notes = correct_slips(entry.params, body, errors)
        errors = _errors(entry.params, body) if notes else errors
    unknown = sorted(set(body) - set(entry.params.model_fields))
    notes += unlisted_choice_notes(entry.params, body)
    if unknown:
        notes.append(
            f"Passed through unchanged, not in the catalogued schema of {endpoint_id}: {', '.join(unknown)} "
            "(the model may ignore them)."
        )
    return CheckedInput(endpoint_id, body, entry, notes, [describe_error(e) for e in errors])


def _errors(params: type[BaseModel], body: dict[str, Any]) -> list[ErrorDetails]:
    try:
        params.model_validate(body)
    except ValidationError as exc:
        return exc.errors()
    return []


def describe_error(error: ErrorDetails) -> str:
    """One field's problem as a sentence: the field, what is wrong or allowed, and what was sent."""
    where = ".".join(str(part) for part in error["loc"]) or "input"
    if error["type"] == "missing":
        return f"{where} is required"
    if not error["loc"]:  # a rule across fields (Kling's frames): its sentence names the fields itself
        return error["msg"]
    sent = _short(error.get("input"))
    return f"{where}: {error['msg'].replace('Input should', 'should')}; you sent {sent}"


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"

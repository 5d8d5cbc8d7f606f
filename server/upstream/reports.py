"""What the upstream reports, as plain values: log lines, a submit receipt, a status, a result.

Kept apart from the HTTP client so that modules needing only these types do not import httpx at start-up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from server.errors import describe_detail

QUEUED_WORDS = frozenset({"IN_QUEUE", "QUEUED", "PENDING", "SUBMITTED"})
RUNNING_WORDS = frozenset({"IN_PROGRESS", "PROCESSING", "RUNNING"})
DONE_WORDS = frozenset({"COMPLETED", "SUCCESS", "SUCCEEDED", "SUCCEED"})

State = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]


@dataclass(frozen=True)
class LogLine:
    message: str
    timestamp: str | None = None
    level: str | None = None

    @property
    def key(self) -> tuple[str | None, str]:
        return (self.timestamp, self.message)


@dataclass(frozen=True)
class SubmitReceipt:
    request_id: str
    endpoint_id: str
    status: str
    queue_position: int | None


@dataclass(frozen=True)
class StatusReport:
    """One status answer. `state` is normalised; `failed` marks a job that completed with an error."""

    state: State
    queue_position: int | None = None
    logs: tuple[LogLine, ...] = ()
    error: str | None = None
    error_type: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclass(frozen=True)
class ResultReport:
    """The result call's answer: the model's output when done, else None (still queued or running); with what the
    upstream says the job is billed for, in the model's priced unit, when it says (fal's `x-fal-billable-units`)."""

    output: dict[str, Any] | None
    billable_units: float | None = None


CancelOutcome = Literal["requested", "already_completed", "not_found"]


def parse_status(data: dict[str, Any]) -> StatusReport:
    """Normalise a status answer, tolerating UniAPI's words (`FAILURE`) and unknown ones (read as failed)."""
    word = str(data.get("status") or "").upper()
    logs = tuple(_parse_logs(data.get("logs")))
    position = int_or_none(data.get("queue_position"))
    if word in QUEUED_WORDS:
        return StatusReport("IN_QUEUE", queue_position=position, logs=logs)
    if word in RUNNING_WORDS:
        return StatusReport("IN_PROGRESS", logs=logs)
    error = data.get("error")
    error_type = data.get("error_type")
    if word in DONE_WORDS:
        return StatusReport(
            "COMPLETED",
            logs=logs,
            error=describe_detail(error) if error else None,
            error_type=str(error_type) if error_type else None,
        )
    shown = word or "(none)"
    return StatusReport(
        "COMPLETED",
        logs=logs,
        error=(describe_detail(error) if error else f"the upstream reports status {shown}"),
        error_type=str(error_type) if error_type else None,
    )


def _parse_logs(raw: Any) -> list[LogLine]:
    if not isinstance(raw, list):
        return []
    seen: set[tuple[str | None, str]] = set()
    lines = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("message"), str):
            continue
        line = LogLine(
            message=item["message"],
            timestamp=str(item["timestamp"]) if item.get("timestamp") is not None else None,
            level=str(item["level"]) if item.get("level") is not None else None,
        )
        if line.key not in seen:
            seen.add(line.key)
            lines.append(line)
    return lines


# A count of units as fal writes it: digits, maybe a fraction ("5", "3.008"). Nothing else is read as one (no sign,
# exponent, NaN, infinity or digit separators), and a count is never absurdly long.
_UNITS = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,12})?")


def billable_units(text: str | None) -> float | None:
    """fal's `x-fal-billable-units` header as a number of units (it may be fractional, e.g. "3.008"); None when
    absent or not such a number: the job's estimate then stands."""
    if text is None or not _UNITS.fullmatch(text := text.strip()):
        return None
    return float(text)


def int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None

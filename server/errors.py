"""Typed failures of the upstream, each carrying a sentence an assistant can act on.

The message never contains the API key: it is built from status codes and upstream `detail` texts only,
and `redact` is applied to every upstream text before it is quoted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


class FalError(Exception):
    """Base of every failure a tool reports as an `isError` result. `str(err)` is the user-facing sentence."""

    kind = "error"

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


class MissingKeyError(FalError):
    kind = "missing_key"


class ConfigurationError(FalError):
    """The server started with a bad setting (or an unusable ledger): every call answers with it until it is fixed."""

    kind = "configuration"


class InvalidRequestError(FalError):
    """Refused locally: nothing was sent."""

    kind = "invalid_request"


class AuthError(FalError):
    kind = "auth"


class NotFoundError(FalError):
    kind = "not_found"


class UpstreamValidationError(FalError):
    kind = "upstream_validation"


class RateLimitedError(FalError):
    kind = "rate_limited"

    def __init__(self, message: str, *, status_code: int | None = 429, retry_after: float | None = None) -> None:
        super().__init__(message, status_code=status_code)
        self.retry_after = retry_after


class UpstreamUnavailableError(FalError):
    """5xx, timeouts and connection failures: worth trying again later."""

    kind = "unavailable"


class BadResponseError(FalError):
    """The upstream answered something this server cannot read (HTML page, malformed JSON, a redirect)."""

    kind = "bad_response"


class SubmitOutcomeUnknownError(FalError):
    """A submit may or may not have reached the upstream; it is never re-sent automatically."""

    kind = "outcome_unknown"


class JobFailedError(FalError):
    """The job ran and failed, or was cancelled; carries the upstream's explanation."""

    kind = "job_failed"

    def __init__(self, message: str, *, status_code: int | None = None, error_type: str | None = None) -> None:
        super().__init__(message, status_code=status_code)
        self.error_type = error_type


class CancelUnsupportedError(FalError):
    kind = "cancel_unsupported"


class BudgetError(FalError):
    """Refused by a money rule (a cap, an unknown price, the user's no): nothing was sent, nothing was spent."""

    kind = "budget"


class DownloadError(FalError):
    """A media file was not saved: the message says what went wrong and what to do; nothing is left behind."""

    kind = "download"


def redact(text: str, secret: str | None) -> str:
    """Remove every occurrence of the secret (and of each half of an id:secret pair) from `text`."""
    if not secret:
        return text
    for part in secret_parts(secret):
        text = text.replace(part, "[redacted]")
    return text


def secret_parts(secret: str) -> set[str]:
    """What `redact` removes: the secret and each half of an id:secret pair, if 4 characters or longer."""
    return {part for part in {secret, *secret.split(":")} if len(part) >= 4}


def scrub_secrets(value: Any, secrets: Sequence[str]) -> Any:
    """`value` (JSON-like) with every secret cut out of its texts, keys of objects included."""
    if isinstance(value, str):
        for secret in secrets:
            value = redact(value, secret)
        return value
    if isinstance(value, list):
        return [scrub_secrets(item, secrets) for item in value]
    if isinstance(value, dict):
        return {scrub_secrets(key, secrets): scrub_secrets(item, secrets) for key, item in value.items()}
    return value


def describe_detail(detail: Any, limit: int = 600) -> str:
    """Render an upstream `detail` (a string, a 422 list of {loc,msg}, or anything) as one short line."""
    if isinstance(detail, str):
        text = detail
    elif isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = item.get("loc") or []
                field = ".".join(str(p) for p in loc if p not in ("body",)) or "input"
                parts.append(f"{field}: {item.get('msg', item)}")
            else:
                parts.append(str(item))
        text = "; ".join(parts)
    else:
        text = json.dumps(detail, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

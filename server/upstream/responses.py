"""Reading the upstream's answers: status codes to typed errors with sentences an assistant can act on, JSON
that may be HTML or garbage, Retry-After, and scrubbing any configured key an upstream echoes back.

Protocol-free and HTTP-client-free apart from reading `httpx.Response` objects.
"""

from __future__ import annotations

import json
import re
import time
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from server.errors import (
    AuthError,
    BadResponseError,
    NotFoundError,
    RateLimitedError,
    SubmitOutcomeUnknownError,
    UpstreamUnavailableError,
    UpstreamValidationError,
    describe_detail,
    scrub_secrets,
    secret_parts,
)
from server.settings import Settings


class AnswerReader:
    """Interprets answers for one configuration (its provider names the key variable in messages)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def scrub(self, value: Any, raw: bytes | None = None) -> Any:
        """An upstream answer with every configured key cut out of its texts (keys of objects included).

        An upstream that echoes the key back (in log lines, an error, a result) must not carry it into tool
        results, the ledger or the logs: every answer passes through here before it is used.

        `raw`, the JSON body `value` was parsed from, lets the common case skip the walk over every string: when
        the body spells each string plainly (see `_spelled_plainly`), a key absent from the body is absent from
        all of them.
        """
        secrets = self._settings.secrets()
        if not secrets:
            return value
        if (
            raw is not None
            and _spelled_plainly(raw)
            and not any(part.encode() in raw for secret in secrets for part in secret_parts(secret))
        ):
            return value
        return scrub_secrets(value, secrets)

    def carries_secret(self, text: str) -> bool:
        """Whether `text` holds a configured key (or half of an id:secret pair): an id that does cannot be
        scrubbed into anything usable, so it is refused instead."""
        return any(part in text for secret in self._settings.secrets() for part in secret_parts(secret))

    def detail(self, response: httpx.Response) -> str:
        body = safe_json(response)
        # fal and Luma say why in `detail`; Kling's envelope in `message`.
        detail: Any = body.get("detail", body.get("message", body)) if isinstance(body, dict) else body
        if detail is None:
            detail = f"HTTP {response.status_code}"
        return describe_detail(self.scrub(detail))  # scrubbed before it is cut short, or a cut key would stay

    def json_or_raise(self, response: httpx.Response, *, action: str) -> dict[str, Any]:
        self.raise_for_status(response, action=action)
        body = safe_json(response)
        if not isinstance(body, dict):
            raise BadResponseError(
                f"The upstream's answer to {action} was not a JSON object "
                f"({describe_body(response)}); the provider may be having trouble, try again later."
            )
        return body

    def raise_for_status(self, response: httpx.Response, *, action: str) -> None:
        code = response.status_code
        if 200 <= code < 300:
            return
        if 300 <= code < 400:
            raise BadResponseError(
                f"The upstream answered {action} with a redirect (HTTP {code}), which this server does not follow "
                "(the API key must not travel to another host). Check FAL_MCP_BASE_URL."
            )
        if code in (401, 403):
            raise AuthError(
                f"The upstream rejected the API key (HTTP {code}): check {self._settings.key_variable} "
                f"for provider '{self._settings.provider}'.",
                status_code=code,
            )
        if code == 404 and action == "submit":
            raise NotFoundError(
                "The upstream has no such model endpoint (HTTP 404), so nothing was submitted: check the model id "
                "(list_fal_models shows the catalogued ones; other fal endpoint ids must exist on fal).",
                status_code=404,
            )
        if code == 404:
            raise NotFoundError(
                "The upstream does not know this request id (HTTP 404): check the id and the model it was "
                "submitted to, or whether the provider has already discarded it.",
                status_code=404,
            )
        if code == 422:
            raise UpstreamValidationError(
                f"The upstream rejected the input (HTTP 422): {self.detail(response)}. Fix those fields and retry.",
                status_code=422,
            )
        if code == 429:
            retry_after = retry_after_seconds(response)
            raise RateLimitedError(rate_limit_text(retry_after), retry_after=retry_after)
        if action == "submit" and code >= 500:
            raise SubmitOutcomeUnknownError(
                f"The upstream answered the submit with HTTP {code}; a job may or may not have been started and "
                "billed. Check your provider's dashboard or list_fal_jobs before resubmitting.",
                status_code=code,
            )
        if code >= 500:
            raise UpstreamUnavailableError(
                f"The upstream failed on {action} (HTTP {code}): {self.detail(response)}. Try again in a minute.",
                status_code=code,
            )
        raise BadResponseError(
            f"The upstream refused {action} (HTTP {code}): {self.detail(response)}", status_code=code
        )


STATUS_KEYS = frozenset(
    {
        "status",
        "request_id",
        "queue_position",
        "logs",
        "metrics",
        "response_url",
        "status_url",
        "cancel_url",
        "error",
        "error_type",
        "detail",
        "message",
    }
)


# fal's answers nest a handful of levels. One nested thousands deep is an attack on the recursion limit: every
# later step (scrubbing keys, finding media, storing, answering) walks the value recursively.
MAX_ANSWER_DEPTH = 64


def _spelled_plainly(raw: bytes) -> bool:
    """No escape (backslash) and no NUL (UTF-16/32): each JSON string in `raw` is its decoded text, in UTF-8."""
    return b"\\" not in raw and b"\x00" not in raw


def parse_json(data: bytes | str) -> Any:
    """The JSON value, or None when `data` is not JSON or nests deeper than MAX_ANSWER_DEPTH (an unreadable
    answer, like an HTML page)."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):  # the decoder recurses once per nesting level
        return None
    return value if _nests_within(value, MAX_ANSWER_DEPTH) else None


def _nests_within(value: Any, limit: int) -> bool:
    """Whether `value` nests arrays and objects at most `limit` deep; iterative, so it cannot recurse itself."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth >= limit:
            return False
        pending.extend((child, depth + 1) for child in children)
    return True


def safe_json(response: httpx.Response) -> Any:
    return parse_json(response.content)


# Only the bare media type of a Content-Type is ever quoted, and only one of a registered top-level type: the
# header is the upstream's to fill, and a key echoed into it must not travel on into messages and the ledger.
_MEDIA_TYPE = re.compile(r"(?:application|audio|font|image|model|multipart|text|video)/[a-z0-9][a-z0-9.+-]{0,60}")


def media_type_of(response: httpx.Response) -> str | None:
    bare = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return bare if _MEDIA_TYPE.fullmatch(bare) else None


def describe_body(response: httpx.Response) -> str:
    kind = media_type_of(response)
    if (kind and "html" in kind) or response.content.lstrip()[:1] == b"<":
        return f"an HTML page, HTTP {response.status_code}"
    return f"{kind or 'an unreadable type'}, HTTP {response.status_code}, {len(response.content)} bytes"


def is_in_progress(response: httpx.Response) -> bool:
    body = safe_json(response)
    detail = body.get("detail") if isinstance(body, dict) else None
    return isinstance(detail, str) and "in progress" in detail.lower()


def body_error_type(response: httpx.Response) -> str | None:
    body = safe_json(response)
    value = body.get("error_type") if isinstance(body, dict) else None
    return str(value) if value else None


_ERROR_TYPE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def plain_error_type(value: str | None) -> str | None:
    """An error type (fal's are words like `downstream_service_error`) as quotable, or None when it is not one:
    it comes from a header or body the upstream fills, and is shown to the assistant and kept in the ledger."""
    return value if value and _ERROR_TYPE.fullmatch(value) else None


def error_text(data: dict[str, Any]) -> str:
    for key in ("error", "detail", "message"):
        if data.get(key):
            return describe_detail(data[key])
    return ""


def retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def rate_limit_text(retry_after: float | None) -> str:
    when = f"after {retry_after:.0f} s" if retry_after is not None else "in a minute"
    return f"The upstream is rate limiting requests (HTTP 429); try again {when}."

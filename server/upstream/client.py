"""The fal queue client: submit, status, result and cancel against the configured base URL.

Protocol-free (no MCP here). URLs are always built from the configured base plus validated ids; URLs the
upstream hands back (`status_url`, `response_url`) are never fetched. GETs are retried within a deadline;
a POST is re-sent only when the connection was never made, so a user is never billed twice.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx

from server.errors import (
    BadResponseError,
    CancelUnsupportedError,
    FalError,
    JobFailedError,
    MissingKeyError,
    RateLimitedError,
    SubmitOutcomeUnknownError,
    UpstreamUnavailableError,
)
from server.settings import Settings, missing_key_message
from server.upstream import ids
from server.upstream.bodies import ACCEPT_ENCODING, BodyError, BodyTooLarge, decoded_response, read_decoded
from server.upstream.reports import (
    DONE_WORDS,
    QUEUED_WORDS,
    RUNNING_WORDS,
    CancelOutcome,
    ResultReport,
    StatusReport,
    SubmitReceipt,
    int_or_none,
    parse_status,
)
from server.upstream.responses import (
    STATUS_KEYS,
    AnswerReader,
    body_error_type,
    describe_body,
    error_text,
    is_in_progress,
    plain_error_type,
    rate_limit_text,
    retry_after_seconds,
    safe_json,
)

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 429, 502, 503, 504})
BACKOFF_BASE_SECONDS = 0.25
BACKOFF_CAP_SECONDS = 8.0
USER_AGENT = "fal-queue-mcp/0.1"
_DEADLINE_MARGIN = 0.05  # seconds kept back from a caller's deadline to report why the retries stopped


def create_http_client(settings: Settings, instance_id: str | None = None) -> httpx.AsyncClient:
    """The one pooled client for the server's lifetime: explicit timeouts, no redirects, no env proxies, no
    compression offered (see server.upstream.bodies). `instance_id` (a random name, nothing secret) goes into the
    User-Agent, so requests of several instances sharing one account can be told apart."""
    agent = USER_AGENT + (f" instance/{instance_id}" if instance_id else "")
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.request_timeout, connect=settings.connect_timeout),
        limits=httpx.Limits(
            max_connections=settings.max_connections, max_keepalive_connections=settings.max_connections
        ),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": agent, "Accept": "application/json", "Accept-Encoding": ACCEPT_ENCODING},
    )


class FalQueueClient:
    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._http = http
        self._base = settings.base_url
        self._base_netloc = urlsplit(settings.base_url).netloc
        self._answers = AnswerReader(settings)
        # None until a status stream was tried; False once the provider refused one (UniAPI documents none).
        self.stream_supported: bool | None = None

    # ---- the four calls -------------------------------------------------------------------------

    async def submit(self, endpoint_id: str, body: dict[str, Any]) -> SubmitReceipt:
        url = self._url(endpoint_id)
        payload = json.dumps(body, ensure_ascii=False).encode()
        response = await self._send_submit(url, payload)
        self._answers.raise_for_status(response, action="submit")
        # From here on the upstream accepted the submit (2xx): whatever is wrong with its answer, a job may be
        # running and billed, so every failure is an unknown outcome, never a refusal that invites a resubmit.
        data = safe_json(response)
        if not isinstance(data, dict):
            raise SubmitOutcomeUnknownError(
                f"The upstream accepted the submit (HTTP {response.status_code}) but its answer was not a JSON object "
                f"({describe_body(response)}), so the job cannot be tracked. A job may be running and billed: "
                "check your provider's dashboard or list_fal_jobs before resubmitting.",
                status_code=response.status_code,
            )
        request_id = data.get("request_id")
        if not isinstance(request_id, str):
            raise SubmitOutcomeUnknownError(
                "The upstream accepted the submit but its answer has no request_id, so the job cannot be tracked. "
                "Check your provider's dashboard before resubmitting: a job may be running and billed."
            )
        try:
            ids.validate_request_id(request_id)
        except ids.InvalidIdError:
            raise SubmitOutcomeUnknownError(
                "The upstream accepted the submit but answered with a malformed request_id, so the job cannot be "
                "tracked. A job may be running and billed: check your provider's dashboard before resubmitting."
            ) from None
        if self._answers.carries_secret(request_id):
            # Shaped like an id, but the key echoed back: kept, it would travel into answers, the ledger, the job
            # list and completion. Not quoted, and not kept.
            raise SubmitOutcomeUnknownError(
                "The upstream accepted the submit but answered with a request_id that contains the API key, so it "
                "was not kept and the job cannot be tracked. A job may be running and billed: check your "
                "provider's dashboard before resubmitting."
            )
        return SubmitReceipt(
            request_id=request_id,
            endpoint_id=endpoint_id,
            status=self.scrub(str(data.get("status") or "IN_QUEUE")),
            queue_position=int_or_none(data.get("queue_position")),
        )

    async def status(
        self,
        endpoint_id: str,
        request_id: str,
        *,
        with_logs: bool = True,
        on_retry: Callable[[FalError], None] | None = None,
    ) -> StatusReport:
        """The job's status. `on_retry` hears of each failed attempt that is retried (a bounded wait keeps the
        reason, in case the wait ends before the retries do)."""
        path = self.status_path(endpoint_id, request_id)
        params = {"logs": "1"} if with_logs else None
        response = await self._get(path, params=params, kind="status", on_retry=on_retry)
        return parse_status(self.scrub(self._answers.json_or_raise(response, action="status"), raw=response.content))

    async def result(self, endpoint_id: str, request_id: str) -> ResultReport:
        path = f"{ids.app_id(endpoint_id)}/requests/{ids.validate_request_id(request_id)}"
        response = await self._get(path, kind="result")
        if response.status_code == 400 and is_in_progress(response):
            return ResultReport(output=None)
        if response.status_code == 422:
            raise JobFailedError(
                "The job failed: the model rejected its input (" + self._answers.detail(response) + "). "
                "Fix those fields and submit a new job.",
                status_code=422,
            )
        said = response.headers.get("x-fal-error-type") or body_error_type(response)
        if response.status_code >= 400 and said:
            # Quoted only as a plain word (scrubbed first: an echoed key becomes "[redacted]", no plain word).
            error_type = plain_error_type(self.scrub(said))
            raise JobFailedError(
                f"The job failed ({error_type or 'unnamed error'}): {self._answers.detail(response)}",
                status_code=response.status_code,
                error_type=error_type,
            )
        data = self.scrub(self._answers.json_or_raise(response, action="result"), raw=response.content)
        word = str(data.get("status", "")).upper() if set(data) <= STATUS_KEYS else ""
        if word in QUEUED_WORDS | RUNNING_WORDS:
            return ResultReport(output=None)
        if word and word not in DONE_WORDS:
            raise JobFailedError(f"The job failed: the upstream reports status {word}. {error_text(data)}".strip())
        return ResultReport(output=data)

    async def cancel(self, endpoint_id: str, request_id: str) -> CancelOutcome:
        path = f"{ids.app_id(endpoint_id)}/requests/{ids.validate_request_id(request_id)}/cancel"
        url = self._url(path)
        headers = self._headers()
        try:
            response = await self._read_capped(
                self._http.build_request("PUT", url, headers=headers), self._settings.request_timeout
            )
        except httpx.TimeoutException:
            raise UpstreamUnavailableError(
                "The upstream did not answer the cancel request in time, so it is not known whether the job was "
                "cancelled; check with get_fal_status and try again."
            ) from None
        except httpx.TransportError as exc:
            raise UpstreamUnavailableError(
                f"Could not reach the upstream to cancel ({type(exc).__name__}), so it is not known whether the job "
                "was cancelled; check with get_fal_status and try again."
            ) from None
        except BodyError as exc:
            raise BadResponseError(
                f"The upstream's answer to cancel was {exc.reason}, so it was not read and it is not known whether "
                "the job was cancelled; check with get_fal_status and try again."
            ) from None
        body = safe_json(response)
        word = str(body.get("status", "")).upper() if isinstance(body, dict) else ""
        if 200 <= response.status_code < 300 and not isinstance(body, dict):
            # An HTML maintenance page or a cut-off answer is no confirmation: do not claim the job was cancelled.
            raise BadResponseError(
                f"The upstream's answer to cancel was not a JSON object ({describe_body(response)}), so it is not "
                "known whether the job was cancelled; check with get_fal_status and try again.",
                status_code=response.status_code,
            )
        if response.status_code in (200, 202) or word == "CANCELLATION_REQUESTED":
            return "requested"
        if word == "ALREADY_COMPLETED":
            return "already_completed"
        if response.status_code == 404 and word == "NOT_FOUND":
            return "not_found"
        if response.status_code in (404, 405, 501):
            raise CancelUnsupportedError(
                f"This provider ({self._settings.provider}) does not support cancelling jobs "
                f"(HTTP {response.status_code} on the cancel route). The job keeps running and will be billed; "
                "its result can still be fetched with get_fal_result.",
                status_code=response.status_code,
            )
        self._answers.raise_for_status(response, action="cancel")
        raise BadResponseError(f"Unexpected answer to cancel: HTTP {response.status_code}.")

    # ---- transport ------------------------------------------------------------------------------

    @property
    def http(self) -> httpx.AsyncClient:
        return self._http

    @property
    def settings(self) -> Settings:
        return self._settings

    def scrub(self, value: Any, raw: bytes | None = None) -> Any:
        """An answer with every configured key cut out of it (see `AnswerReader.scrub`)."""
        return self._answers.scrub(value, raw)

    def status_path(self, endpoint_id: str, request_id: str) -> str:
        return f"{ids.app_id(endpoint_id)}/requests/{ids.validate_request_id(request_id)}/status"

    def prepare(self, path: str) -> tuple[str, dict[str, str]]:
        """URL on the base host and auth headers for `path` (for the status stream, which reads incrementally)."""
        return self._url(path), self._headers()

    def _url(self, path: str) -> str:
        url = f"{self._base}/{path}"
        # Defence in depth: ids are validated, but the key must never go anywhere but the base host.
        if urlsplit(url).netloc != self._base_netloc:
            raise FalError("refusing to build a URL outside the configured base host")
        return url

    def _headers(self) -> dict[str, str]:
        key = self._settings.api_key()
        if not key:
            raise MissingKeyError(missing_key_message(self._settings.provider))
        return {"Authorization": f"Key {key}", "Content-Type": "application/json"}

    async def _send_submit(self, url: str, payload: bytes) -> httpx.Response:
        headers = self._headers()
        timeout = httpx.Timeout(self._settings.submit_timeout, connect=self._settings.connect_timeout)
        deadline = time.monotonic() + self._settings.retry_deadline
        attempt = 0
        while True:
            try:
                return await self._read_capped(
                    self._http.build_request("POST", url, content=payload, headers=headers, timeout=timeout),
                    self._settings.submit_timeout,
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # The connection was never made, so nothing reached the upstream: safe to send again.
                delay = _backoff(attempt)
                attempt += 1
                if time.monotonic() + delay > deadline:
                    raise UpstreamUnavailableError(
                        f"Could not connect to the upstream at {self._base_netloc} ({type(exc).__name__}); "
                        "nothing was submitted. Check your network or FAL_MCP_BASE_URL and try again."
                    ) from None
                await anyio.sleep(delay)
            except httpx.TransportError as exc:
                raise SubmitOutcomeUnknownError(
                    f"The submit was sent but no usable answer came back ({type(exc).__name__}); the job may or may "
                    "not be running and billed. Do not resubmit blindly: check your provider's dashboard or "
                    "list_fal_jobs first."
                ) from None
            except BodyError as exc:
                raise SubmitOutcomeUnknownError(
                    f"The submit was sent but its answer was {exc.reason}, so it was not read; the job may or may "
                    "not be running and billed. Do not resubmit blindly: check your provider's dashboard or "
                    "list_fal_jobs first."
                ) from None

    async def _get(
        self,
        path: str,
        *,
        kind: str,
        params: dict[str, str] | None = None,
        on_retry: Callable[[FalError], None] | None = None,
    ) -> httpx.Response:
        """GET with retries on transport errors, 408/429/502/503/504, honouring Retry-After, within a deadline."""
        url = self._url(path)
        headers = self._headers()
        # Retries stop at the retry deadline, or earlier at the caller's own deadline (a bounded wait), so the
        # caller gets the reason instead of being cancelled in the middle of a backoff or of an attempt.
        outer = anyio.current_effective_deadline() - _DEADLINE_MARGIN
        deadline = min(anyio.current_time() + self._settings.retry_deadline, outer)
        attempt = 0
        while True:
            problem: FalError
            retry_after: float | None = None
            until = deadline if attempt > 0 else outer
            timeout = max(_DEADLINE_MARGIN, min(self._settings.request_timeout, until - anyio.current_time()))
            try:
                response = await self._read_capped(
                    self._http.build_request(
                        "GET", url, params=params, headers=headers, timeout=self._http_timeout(timeout)
                    ),
                    timeout,
                )
            except httpx.TimeoutException:
                problem = UpstreamUnavailableError(
                    f"The upstream did not answer the {kind} request in time; try again in a minute."
                )
            except httpx.TransportError as exc:
                problem = UpstreamUnavailableError(
                    f"Could not read the upstream's answer to the {kind} request ({type(exc).__name__}); "
                    "try again in a minute."
                )
            except BodyError as exc:
                # Not retried: the same request would bring the same answer.
                raise BadResponseError(self._unread(kind, exc)) from None
            else:
                if response.status_code not in RETRYABLE_STATUS:
                    return response
                retry_after = retry_after_seconds(response)
                if response.status_code == 429:
                    problem = RateLimitedError(rate_limit_text(retry_after), retry_after=retry_after)
                else:
                    problem = UpstreamUnavailableError(
                        f"The upstream is unavailable (HTTP {response.status_code}); try again in a minute.",
                        status_code=response.status_code,
                    )
            delay = retry_after if retry_after is not None else _backoff(attempt)
            attempt += 1
            if anyio.current_time() + delay + _DEADLINE_MARGIN > deadline:
                raise problem
            if on_retry is not None:
                on_retry(problem)
            await anyio.sleep(delay)

    def _http_timeout(self, seconds: float) -> httpx.Timeout:
        return httpx.Timeout(seconds, connect=self._settings.connect_timeout)

    def _unread(self, kind: str, problem: BodyError) -> str:
        advice = "the provider may be having trouble, try again later."
        if isinstance(problem, BodyTooLarge):
            advice = f"if such answers are expected, raise FAL_MCP_MAX_RESPONSE_BYTES; otherwise {advice}"
        return f"The upstream's answer to the {kind} request was {problem.reason}, so it was not read: {advice}"

    async def _read_capped(self, request: httpx.Request, body_seconds: float) -> httpx.Response:
        """Send, then read the body within `body_seconds`, refusing answers larger than the configured limit
        once decoded (BodyError: see server.upstream.bodies).

        httpx's read timeout bounds each read, not the answer: a body trickling in small pieces, each in time,
        would otherwise hold the call for as long as the upstream likes. Running out of time raises ReadTimeout.
        """
        response = await self._http.send(request, stream=True)
        content = b""
        try:
            with anyio.move_on_after(body_seconds) as scope:
                content = await read_decoded(response, self._settings.max_response_bytes)
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()
        if scope.cancelled_caught:
            raise httpx.ReadTimeout(f"the answer was not complete within {body_seconds:g} s", request=request)
        return decoded_response(response, content)


def _backoff(attempt: int) -> float:
    """Exponential backoff with full jitter."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * (2**attempt))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography

"""The upstream transport every route family's adapter shares: one pooled HTTP client, URLs built only on the
configured base host, each family's auth scheme, retries and capped reads.

Protocol-free (no MCP here). URLs are always built from the configured base plus validated ids; URLs the
upstream hands back (`status_url`, `response_url`) are never fetched. GETs are retried within a deadline;
a POST is re-sent only when the connection was never made (or refused with 401, when nothing was accepted), so
a user is never billed twice.
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
    FalError,
    MissingKeyError,
    RateLimitedError,
    SubmitOutcomeUnknownError,
    UpstreamUnavailableError,
)
from server.settings import AuthScheme, Settings, missing_key_message
from server.upstream.bodies import ACCEPT_ENCODING, BodyError, BodyTooLarge, decoded_response, read_decoded
from server.upstream.ids import Family
from server.upstream.responses import (
    AnswerReader,
    rate_limit_text,
    retry_after_seconds,
)

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 429, 502, 503, 504})
BACKOFF_BASE_SECONDS = 0.25
BACKOFF_CAP_SECONDS = 8.0
USER_AGENT = "fal-queue-mcp/0.1"
# Families whose auth scheme is a guess (UniAPI documents none for them): a 401 is tried once with the other one.
SCHEME_FALLBACK: frozenset[Family] = frozenset({"kling", "luma"})
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


class UpstreamClient:
    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._http = http
        self._base = settings.base_url
        self._base_netloc = urlsplit(settings.base_url).netloc
        self._answers = AnswerReader(settings)
        # Each family's auth scheme: its setting, until a 401 answered with the other scheme working (on the native
        # routes, whose scheme UniAPI does not document; fal's `Key` is documented, so a 401 there is the key's
        # fault). Remembered in memory only: after a restart the first call tries the setting again.
        self.schemes: dict[Family, AuthScheme] = {
            "fal": settings.fal_auth,
            "kling": settings.kling_auth,
            "luma": settings.luma_auth,
        }

    # ---- the calls adapters make ----------------------------------------------------------------------------

    async def post(self, path: str, body: dict[str, Any], *, family: Family) -> httpx.Response:
        """Send a submit once (see `_send_submit`); a 401 is tried once more with the other auth scheme, on the
        same host: a 401 means nothing was accepted. The scheme that worked is remembered for the family."""
        url = self._url(path)
        payload = json.dumps(body, ensure_ascii=False).encode()
        scheme = self.schemes[family]
        response = await self._send_submit(url, payload, self._headers(scheme))
        if response.status_code == 401 and family in SCHEME_FALLBACK:
            other = _other(scheme)
            second = await self._send_submit(url, payload, self._headers(other))
            if second.status_code != 401:
                self._switch(family, other)
                return second
        return response

    async def get(
        self,
        path: str,
        *,
        family: Family,
        kind: str,
        params: dict[str, str] | None = None,
        on_retry: Callable[[FalError], None] | None = None,
    ) -> httpx.Response:
        """A GET with retries (see `_get`); a 401 is tried once with the other auth scheme, as on a submit."""
        scheme = self.schemes[family]
        response = await self._get(path, kind=kind, params=params, on_retry=on_retry, scheme=scheme)
        if response.status_code == 401 and family in SCHEME_FALLBACK:
            other = _other(scheme)
            second = await self._get(path, kind=kind, params=params, on_retry=on_retry, scheme=other)
            if second.status_code != 401:
                self._switch(family, other)
                return second
        return response

    async def put(self, path: str, *, family: Family) -> httpx.Response:
        """One PUT (a cancel), never retried; transport errors are raised as they come."""
        request = self._http.build_request("PUT", self._url(path), headers=self._headers(self.schemes[family]))
        return await self._read_capped(request, self._settings.request_timeout)

    def _switch(self, family: Family, scheme: AuthScheme) -> None:
        log.warning(
            "the %s routes refused the '%s' auth scheme and accepted '%s'; using '%s' from now on (set it for good "
            "with FAL_MCP_%s_AUTH=%s)",
            family,
            self.schemes[family],
            scheme,
            scheme,
            family.upper(),
            scheme,
        )
        self.schemes[family] = scheme

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

    @property
    def answers(self) -> AnswerReader:
        return self._answers

    def prepare(self, path: str, family: Family) -> tuple[str, dict[str, str]]:
        """URL on the base host and auth headers for `path` (for the status stream, which reads incrementally)."""
        return self._url(path), self._headers(self.schemes[family])

    def _url(self, path: str) -> str:
        url = f"{self._base}/{path}"
        # Defence in depth: ids are validated, but the key must never go anywhere but the base host.
        if urlsplit(url).netloc != self._base_netloc:
            raise FalError("refusing to build a URL outside the configured base host")
        return url

    def _headers(self, scheme: AuthScheme) -> dict[str, str]:
        key = self._settings.api_key()
        if not key:
            raise MissingKeyError(missing_key_message(self._settings.provider))
        return {"Authorization": f"{scheme} {key}", "Content-Type": "application/json"}

    async def _send_submit(self, url: str, payload: bytes, headers: dict[str, str]) -> httpx.Response:
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
        scheme: AuthScheme,
        params: dict[str, str] | None = None,
        on_retry: Callable[[FalError], None] | None = None,
    ) -> httpx.Response:
        """GET with retries on transport errors, 408/429/502/503/504, honouring Retry-After, within a deadline."""
        url = self._url(path)
        headers = self._headers(scheme)
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


def _other(scheme: AuthScheme) -> AuthScheme:
    return "Bearer" if scheme == "Key" else "Key"


def _backoff(attempt: int) -> float:
    """Exponential backoff with full jitter."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * (2**attempt))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography

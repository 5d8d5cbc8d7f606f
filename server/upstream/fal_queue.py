"""The fal queue adapter: submit, status (polled or streamed), result and cancel on `{base}/fal-ai/...`.

Status, result and cancel use the app id (the endpoint id's first two segments); see `ids.app_id`. There is no
FAILED status on this route: a failed job reports COMPLETED with an error, and its result call says why.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any

import httpx

from server.errors import (
    BadResponseError,
    CancelUnsupportedError,
    FalError,
    JobFailedError,
    SubmitOutcomeUnknownError,
    UpstreamUnavailableError,
)
from server.upstream import ids
from server.upstream.bodies import BodyError
from server.upstream.client import UpstreamClient
from server.upstream.ids import Family
from server.upstream.outputs import MediaFile, find_media
from server.upstream.reports import (
    DONE_WORDS,
    QUEUED_WORDS,
    RUNNING_WORDS,
    CancelOutcome,
    ResultReport,
    StatusReport,
    SubmitReceipt,
    billable_units,
    int_or_none,
    parse_status,
)
from server.upstream.responses import (
    STATUS_KEYS,
    body_error_type,
    describe_body,
    error_text,
    is_in_progress,
    plain_error_type,
    safe_json,
)


class FalQueueAdapter:
    family: Family = "fal"
    can_cancel = True

    def __init__(self, client: UpstreamClient) -> None:
        self._client = client
        self._settings = client.settings
        self._answers = client.answers
        # None until a status stream was tried; False once the provider refused one (UniAPI documents none).
        self.stream_supported: bool | None = None

    def scrub(self, value: Any, raw: bytes | None = None) -> Any:
        return self._client.scrub(value, raw)

    async def submit(self, endpoint_id: str, body: dict[str, Any]) -> SubmitReceipt:
        response = await self._client.post(endpoint_id, body, family="fal")
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
            status=self._client.scrub(str(data.get("status") or "IN_QUEUE")),
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
        response = await self._client.get(path, family="fal", params=params, kind="status", on_retry=on_retry)
        return parse_status(
            self._client.scrub(self._answers.json_or_raise(response, action="status"), raw=response.content)
        )

    async def result(self, endpoint_id: str, request_id: str) -> ResultReport:
        path = f"{ids.app_id(endpoint_id)}/requests/{ids.validate_request_id(request_id)}"
        response = await self._client.get(path, family="fal", kind="result")
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
            error_type = plain_error_type(self._client.scrub(said))
            raise JobFailedError(
                f"The job failed ({error_type or 'unnamed error'}): {self._answers.detail(response)}",
                status_code=response.status_code,
                error_type=error_type,
            )
        data = self._client.scrub(self._answers.json_or_raise(response, action="result"), raw=response.content)
        word = str(data.get("status", "")).upper() if set(data) <= STATUS_KEYS else ""
        if word in QUEUED_WORDS | RUNNING_WORDS:
            return ResultReport(output=None)
        if word and word not in DONE_WORDS:
            raise JobFailedError(f"The job failed: the upstream reports status {word}. {error_text(data)}".strip())
        # what the job is billed for, in its priced unit (fal sends it; whether UniAPI passes it on is not known)
        return ResultReport(output=data, billable_units=billable_units(response.headers.get("x-fal-billable-units")))

    async def cancel(self, endpoint_id: str, request_id: str) -> CancelOutcome:
        path = f"{ids.app_id(endpoint_id)}/requests/{ids.validate_request_id(request_id)}/cancel"
        try:
            response = await self._client.put(path, family="fal")
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

    def status_stream(self, endpoint_id: str, request_id: str) -> AsyncGenerator[StatusReport, None]:
        """fal's status stream (server-sent events); imported here, on the first wait that streams."""
        from server.upstream.stream import stream_status

        return stream_status(self._client, self.status_path(endpoint_id, request_id) + "/stream")

    @staticmethod
    def media(output: dict[str, Any]) -> list[MediaFile]:
        return find_media(output)  # each video or image of the output is kept as {url, content_type}

    def status_path(self, endpoint_id: str, request_id: str) -> str:
        return f"{ids.app_id(endpoint_id)}/requests/{ids.validate_request_id(request_id)}/status"

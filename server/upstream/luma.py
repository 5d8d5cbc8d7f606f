"""UniAPI's native Luma routes: `POST {base}/luma/generations` makes a generation, `POST .../{id}/extend` extends
a finished one, `GET .../{id}` reads it (status and result in one answer), `GET .../{id}/download_video_url` gives
the video without a watermark. No status stream, no cancel.

A generation is `{id, state, video, failure_reason, ...}`; `state` is `pending | processing | completed | failed`
on most relays and `queued | dreaming | completed | failed` on Luma's own API; `video` is null until it is done,
then `{url (watermarked), download_url (may be empty), width, height}`. Generation ids are UUIDs.

The extend model (`luma/generations/extend`) takes the source generation's request id in the input field
`source_request_id`; it goes into the route's path, not into the body.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any

from server.errors import (
    BadResponseError,
    CancelUnsupportedError,
    FalError,
    InvalidRequestError,
    JobFailedError,
    SubmitOutcomeUnknownError,
)
from server.errors import describe_detail as describe
from server.upstream import ids
from server.upstream.client import UpstreamClient
from server.upstream.ids import LUMA_EXTEND, LUMA_GENERATE, LUMA_SOURCE_FIELD, Family
from server.upstream.outputs import MediaFile, find_media
from server.upstream.reports import CancelOutcome, ResultReport, StatusReport, SubmitReceipt
from server.upstream.responses import describe_body, safe_json

log = logging.getLogger(__name__)

STATES: dict[str, str] = {
    "pending": "IN_QUEUE",
    "queued": "IN_QUEUE",
    "processing": "IN_PROGRESS",
    "dreaming": "IN_PROGRESS",
    "completed": "COMPLETED",
}
FAILED = "failed"
SOURCE_FIELD = LUMA_SOURCE_FIELD
VIDEO_TYPE = "video/mp4"
_unknown_states_logged: set[str] = set()


class LumaAdapter:
    family: Family = "luma"
    can_cancel = False
    stream_supported: bool | None = False

    def __init__(self, client: UpstreamClient) -> None:
        self._client = client

    async def submit(self, model_id: str, body: dict[str, Any]) -> SubmitReceipt:
        path, sent = submit_route(model_id, body)
        response = await self._client.post(path, sent, family="luma")
        self._client.answers.raise_for_status(response, action="submit")
        # Accepted (2xx): whatever is wrong with the answer, a generation may be running and billed.
        generation = _generation(self._client.scrub(safe_json(response)))
        gid = generation.get("id") if generation is not None else None
        try:
            request_id = ids.validate_request_id(gid) if isinstance(gid, str) else None
        except ids.InvalidIdError:
            request_id = None
        if request_id is None or generation is None:
            raise SubmitOutcomeUnknownError(
                f"Luma accepted the submit (HTTP {response.status_code}) but its answer has no usable generation id "
                f"({describe_body(response)}), so the job cannot be tracked. A generation may be running and billed: "
                "check your UniAPI dashboard or list_fal_jobs before resubmitting.",
                status_code=response.status_code,
            )
        return SubmitReceipt(
            request_id=request_id, endpoint_id=model_id, status=parse_generation(generation).state, queue_position=None
        )

    async def status(
        self,
        model_id: str,
        request_id: str,
        *,
        with_logs: bool = True,
        on_retry: Callable[[FalError], None] | None = None,
    ) -> StatusReport:
        return parse_generation(await self._generation(request_id, "status", on_retry))

    async def result(self, model_id: str, request_id: str) -> ResultReport:
        generation = await self._generation(request_id, "result", None)
        report = parse_generation(generation)
        if report.failed:
            raise JobFailedError(f"The job failed: {report.error}", error_type=report.error_type)
        if report.state != "COMPLETED":
            return ResultReport(output=None)
        video = generation.get("video")
        watermarked = video.get("url") if isinstance(video, dict) else None
        if not isinstance(watermarked, str) or not watermarked:
            raise JobFailedError(
                "The job failed: Luma reports the generation completed but gave no video. Submit it again.",
                error_type="no_video",
            )
        clean = video.get("download_url") if isinstance(video, dict) else None
        if not isinstance(clean, str) or not clean:
            clean = await self._download_url(request_id)
        return ResultReport(output=generation_output(generation, clean))

    async def cancel(self, model_id: str, request_id: str) -> CancelOutcome:
        raise CancelUnsupportedError(
            "Luma's routes have no cancel, so nothing was sent: the generation keeps running and will be billed; "
            "its result can still be fetched with get_fal_result."
        )

    def status_stream(self, model_id: str, request_id: str) -> AsyncGenerator[StatusReport, None]:
        raise NotImplementedError("Luma's routes have no status stream")  # stream_supported is False: never asked

    @staticmethod
    def media(output: dict[str, Any]) -> list[MediaFile]:
        return find_media(output)  # each video or image of the output is kept as {url, content_type}

    async def _generation(
        self, request_id: str, kind: str, on_retry: Callable[[FalError], None] | None
    ) -> dict[str, Any]:
        path = f"{LUMA_GENERATE}/{ids.validate_request_id(request_id)}"
        response = await self._client.get(path, family="luma", kind=kind, on_retry=on_retry)
        body = self._client.scrub(self._client.answers.json_or_raise(response, action=kind), raw=response.content)
        generation = _generation(body)
        if generation is None:
            raise BadResponseError(
                f"Luma's answer to {kind} has no generation in it ({describe_body(response)}); try again in a minute.",
                status_code=response.status_code,
            )
        return generation

    async def _download_url(self, request_id: str) -> str | None:
        """The no-watermark link from the download route, or None when it gives none (the video URL serves)."""
        path = f"{LUMA_GENERATE}/{ids.validate_request_id(request_id)}/download_video_url"
        try:
            response = await self._client.get(path, family="luma", kind="download URL")
        except FalError as exc:
            log.info("Luma's download URL route failed (%s); the video URL is used", exc.message)
            return None
        body = self._client.scrub(safe_json(response), raw=response.content) if response.is_success else None
        url = body.get("url") if isinstance(body, dict) else None
        return url if isinstance(url, str) and url.startswith(("https://", "http://")) else None


def submit_route(model_id: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The path and body of a submit: an extend names its source generation in the path, not in the body."""
    if model_id != LUMA_EXTEND:
        return model_id, body
    source = body.get(SOURCE_FIELD)
    if not isinstance(source, str):
        raise InvalidRequestError(
            f"Extending a Luma video needs the input field {SOURCE_FIELD}: the request id of the finished "
            "luma/generations job to extend (see list_fal_jobs). Nothing was submitted."
        )
    source = ids.validate_request_id(source)
    return f"{LUMA_GENERATE}/{source}/extend", {key: value for key, value in body.items() if key != SOURCE_FIELD}


def parse_generation(generation: dict[str, Any]) -> StatusReport:
    """A Luma generation as a status: `failed` is a completed job with the upstream's reason; an unknown state is
    still running (logged once per state word)."""
    word = str(generation.get("state") or "").lower()
    if word == FAILED:
        reason = generation.get("failure_reason") or generation.get("detail")
        return StatusReport(
            "COMPLETED",
            error=describe(reason) if reason else "Luma reports the generation failed (no reason given)",
            error_type="generation_failed",
        )
    state = STATES.get(word)
    if state is None:
        if word not in _unknown_states_logged:
            _unknown_states_logged.add(word)
            log.warning("Luma reported an unknown generation state %r; taken as still running", word[:40])
        return StatusReport("IN_PROGRESS")
    return StatusReport(state)  # type: ignore[arg-type]  # one of STATES' values


def generation_output(generation: dict[str, Any], clean_url: str | None) -> dict[str, Any]:
    """A finished generation's output: its video (the no-watermark link when there is one) with its MIME type. The
    thumbnail and last frame are kept as plain URLs: they are not the result, so they are neither shown nor saved."""
    video = generation.get("video")
    assert isinstance(video, dict)
    watermarked = video.get("url")
    kept: dict[str, Any] = {"url": clean_url or watermarked, "content_type": VIDEO_TYPE}
    for key in ("width", "height"):
        if isinstance(video.get(key), int):
            kept[key] = video[key]
    if clean_url and clean_url != watermarked:
        kept["watermarked_url"] = watermarked
    output: dict[str, Any] = {"video": kept, "generation_id": generation.get("id")}
    for key in ("thumbnail", "last_frame"):
        image = generation.get(key)
        if isinstance(image, dict) and isinstance(image.get("url"), str):
            output[f"{key}_url"] = image["url"]
    for key in ("prompt", "created_at"):
        if isinstance(generation.get(key), str):
            output[key] = generation[key]
    return output


def _generation(body: Any) -> dict[str, Any] | None:
    """The generation object: the answer itself, or under `data` (some relays wrap it)."""
    if isinstance(body, dict) and "id" in body:
        return body
    data = body.get("data") if isinstance(body, dict) else None
    return data if isinstance(data, dict) and "id" in data else None

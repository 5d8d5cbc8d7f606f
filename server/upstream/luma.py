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
from typing import Any

from server.errors import (
    FalError,
    InvalidRequestError,
    JobFailedError,
    SubmitOutcomeUnknownError,
)
from server.upstream import ids
from server.upstream.ids import LUMA_EXTEND, LUMA_GENERATE, LUMA_SOURCE_FIELD, Family
from server.upstream.polled import PolledAdapter, TaskStates
from server.upstream.reports import StatusReport, SubmitReceipt
from server.upstream.responses import describe_body, safe_json

log = logging.getLogger(__name__)

STATES: dict[str, str] = {
    "pending": "IN_QUEUE",
    "queued": "IN_QUEUE",
    "processing": "IN_PROGRESS",
    "dreaming": "IN_PROGRESS",
    "completed": "COMPLETED",
}
SOURCE_FIELD = LUMA_SOURCE_FIELD
VIDEO_TYPE = "video/mp4"
_GENERATION_STATES = TaskStates(
    STATES,
    no_reason="Luma reports the generation failed (no reason given)",
    error_type="generation_failed",
    unknown_warning="Luma reported an unknown generation state %r; taken as still running",
    log=log,
)


class LumaAdapter(PolledAdapter):
    family: Family = "luma"
    title = "Luma"
    noun = "generation"

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

    def _task_path(self, model_id: str, request_id: str) -> str:
        return f"{LUMA_GENERATE}/{request_id}"

    def _unwrap(self, body: Any) -> dict[str, Any] | None:
        return _generation(body)

    def _parse(self, task: dict[str, Any]) -> StatusReport:
        return parse_generation(task)

    async def _output(self, request_id: str, task: dict[str, Any]) -> dict[str, Any]:
        video = task.get("video")
        watermarked = video.get("url") if isinstance(video, dict) else None
        if not isinstance(watermarked, str) or not watermarked:
            raise JobFailedError(
                "The job failed: Luma reports the generation completed but gave no video. Submit it again.",
                error_type="no_video",
            )
        clean = video.get("download_url") if isinstance(video, dict) else None
        if not isinstance(clean, str) or not clean:
            clean = await self._download_url(request_id)
        return generation_output(task, clean)

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
    """A Luma generation as a status (see `TaskStates`)."""
    reason = generation.get("failure_reason") or generation.get("detail")
    return _GENERATION_STATES.report(str(generation.get("state") or "").lower(), reason)


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

"""What the polled task families (UniAPI's native Kling and Luma routes) share: one `GET` of a task answers both its
status and its result, a state word maps onto the fal states, and there is no status stream and no cancel.

Each family's adapter keeps only its own: how it submits, where a task is read, how its answer wraps the task, and
what a finished task's output is.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

from server.errors import BadResponseError, CancelUnsupportedError, FalError, JobFailedError
from server.errors import describe_detail as describe
from server.upstream import ids
from server.upstream.client import UpstreamClient
from server.upstream.ids import Family
from server.upstream.outputs import MediaFile, find_media
from server.upstream.reports import CancelOutcome, ResultReport, StatusReport
from server.upstream.responses import describe_body

FAILED = "failed"


@dataclass(frozen=True)
class TaskStates:
    """A family's state words as fal states: `failed` is a completed job with the upstream's reason; an unknown word
    is still running, logged once per word (so a new word is noticed without flooding the log)."""

    states: dict[str, str]
    no_reason: str  # the error when a failed task gives no reason
    error_type: str
    unknown_warning: str  # a log format with one %r: the unknown word
    log: logging.Logger
    _logged: set[str] = field(default_factory=set, compare=False)

    def report(self, word: str, reason: Any) -> StatusReport:
        if word == FAILED:
            return StatusReport(
                "COMPLETED", error=describe(reason) if reason else self.no_reason, error_type=self.error_type
            )
        state = self.states.get(word)
        if state is None:
            if word not in self._logged:
                self._logged.add(word)
                self.log.warning(self.unknown_warning, word[:40])
            return StatusReport("IN_PROGRESS")
        return StatusReport(state)  # type: ignore[arg-type]  # one of the states' values


class PolledAdapter:
    """A route family whose tasks are polled. Subclasses set the names and implement `submit` and the hooks below."""

    family: Family
    title: ClassVar[str]  # the family in messages: "Kling"
    noun: ClassVar[str]  # what it calls a job: "task"
    can_cancel = False
    stream_supported: bool | None = False

    def __init__(self, client: UpstreamClient) -> None:
        self._client = client

    # ---- the family's own -----------------------------------------------------------------------------------------

    def _task_path(self, model_id: str, request_id: str) -> str:
        """Where the task is read (its request id already validated)."""
        raise NotImplementedError

    def _unwrap(self, body: Any) -> dict[str, Any] | None:
        """The task in a (scrubbed) answer, or None when the answer has none."""
        raise NotImplementedError

    def _parse(self, task: dict[str, Any]) -> StatusReport:
        raise NotImplementedError

    async def _output(self, request_id: str, task: dict[str, Any]) -> dict[str, Any]:
        """A completed (not failed) task's output."""
        raise NotImplementedError

    def _said(self, response: httpx.Response) -> str:
        """What an answer without a task says, for the error."""
        return describe_body(response)

    # ---- shared ---------------------------------------------------------------------------------------------------

    async def status(
        self,
        model_id: str,
        request_id: str,
        *,
        with_logs: bool = True,
        on_retry: Callable[[FalError], None] | None = None,
    ) -> StatusReport:
        return self._parse(await self._read(model_id, request_id, "status", on_retry))

    async def result(self, model_id: str, request_id: str) -> ResultReport:
        task = await self._read(model_id, request_id, "result", None)
        report = self._parse(task)
        if report.failed:
            raise JobFailedError(f"The job failed: {report.error}", error_type=report.error_type)
        if report.state != "COMPLETED":
            return ResultReport(output=None)
        return ResultReport(output=await self._output(request_id, task))

    async def cancel(self, model_id: str, request_id: str) -> CancelOutcome:
        raise CancelUnsupportedError(
            f"{self.title}'s routes have no cancel, so nothing was sent: the {self.noun} keeps running and will be "
            "billed; its result can still be fetched with get_fal_result."
        )

    def status_stream(self, model_id: str, request_id: str) -> AsyncGenerator[StatusReport, None]:
        raise NotImplementedError(f"{self.title}'s routes have no status stream")  # stream_supported is False

    @staticmethod
    def media(output: dict[str, Any]) -> list[MediaFile]:
        return find_media(output)  # each video or image of the output is kept as {url, content_type}

    async def _read(
        self, model_id: str, request_id: str, kind: str, on_retry: Callable[[FalError], None] | None
    ) -> dict[str, Any]:
        path = self._task_path(model_id, ids.validate_request_id(request_id))
        response = await self._client.get(path, family=self.family, kind=kind, on_retry=on_retry)
        body = self._client.scrub(self._client.answers.json_or_raise(response, action=kind), raw=response.content)
        task = self._unwrap(body)
        if task is None:
            raise BadResponseError(
                f"{self.title}'s answer to {kind} has no {self.noun} in it ({self._said(response)}); try again in a "
                "minute.",
                status_code=response.status_code,
            )
        return task

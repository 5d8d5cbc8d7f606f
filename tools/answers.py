"""The structured answers of the tools; each class is also the tool's published `outputSchema`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Status = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
Outcome = Literal["pending", "succeeded", "failed"]


class SubmitAnswer(BaseModel):
    request_id: str = Field(description="The job's id; pass it to get_fal_status / get_fal_result.")
    model: str = Field(description="The normalised fal endpoint id the job was submitted to.")
    status: str
    queue_position: int | None = None
    validated: bool = Field(description="Whether the input was checked against a catalogued schema.")
    notes: list[str] = Field(default_factory=list)
    next: str = Field(description="What to call next.")


class StatusAnswer(BaseModel):
    request_id: str
    model: str
    status: Status
    outcome: Outcome = Field(description="'failed' when the job completed with an error.")
    queue_position: int | None = None
    logs: list[str] = Field(default_factory=list, description="Recent log lines, oldest first.")
    elapsed_seconds: float | None = Field(None, description="Seconds since submit, when known here.")
    error: str | None = None
    error_type: str | None = None
    next: str


class MediaFile(BaseModel):
    url: str
    content_type: str | None = None
    field: str = Field(description="Where in the output the file was found, e.g. 'video' or 'images[0]'.")


class SavedDownload(BaseModel):
    url: str
    path: str
    size: int
    sha256: str


class ResultAnswer(BaseModel):
    request_id: str
    model: str
    done: bool = Field(description="False while the job is still queued or running.")
    status: Status
    output: dict[str, Any] | None = Field(None, description="The model's output, when done.")
    media: list[MediaFile] = Field(default_factory=list)
    queue_position: int | None = None
    logs: list[str] = Field(default_factory=list)
    downloads: list[SavedDownload] = Field(default_factory=list)
    download_problems: list[str] = Field(default_factory=list)
    next: str


class CancelAnswer(BaseModel):
    request_id: str
    model: str
    outcome: Literal["requested", "already_completed"]
    message: str

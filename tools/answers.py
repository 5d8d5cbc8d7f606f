"""The structured answers of the tools; each class is also the tool's published `outputSchema`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from server.jobs.ledger.base import MAX_LIST_LIMIT as MAX_LIST_LIMIT  # the limit list_fal_jobs checks
from server.upstream.outputs import MediaFile

Status = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
Outcome = Literal["pending", "succeeded", "failed"]


class CostEstimate(BaseModel):
    usd: float | None  # None when the price is in another currency (never converted)
    unit: str
    quantity: float
    unit_price: float
    source: str
    as_of: str


class SubmitAnswer(BaseModel):
    request_id: str | None = Field(None, description="The job's id (absent on a dry run).")
    model: str = Field(description="The normalised fal endpoint id the job was submitted to.")
    status: str | None = None
    queue_position: int | None = None
    validated: bool = Field(description="Whether the input was checked against a catalogued schema.")
    cost_estimate: CostEstimate | None = None
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


class Cost(BaseModel):
    """What a job cost: the upstream's bill, or the estimate made at submit when no bill was told (and while the job
    runs), or nothing ('released': it failed or was cancelled before running)."""

    usd: float
    kind: Literal["billed", "estimated", "released"]


class SavedDownload(BaseModel):
    url: str
    path: str
    size: int
    sha256: str


class ResultAnswer(BaseModel):
    request_id: str
    model: str
    done: bool = Field(description="False while the job is still queued or running.")
    status: Status | None = Field(None, description="Absent when no status has been seen yet.")
    output: dict[str, Any] | None = Field(None, description="The model's output, when done.")
    media: list[MediaFile] = Field(default_factory=list)
    queue_position: int | None = None
    logs: list[str] = Field(default_factory=list)
    downloads: list[SavedDownload] = Field(default_factory=list)
    download_problems: list[str] = Field(default_factory=list)
    cost: Cost | None = None
    next: str


class CancelAnswer(BaseModel):
    request_id: str
    model: str
    outcome: Literal["requested", "already_completed"]
    message: str


class ModelSummary(BaseModel):
    model: str
    title: str
    family: str
    task: str
    featured: bool
    required: list[str]
    key_parameters: str = Field(description="The main optional parameters and their allowed values.")


class ModelList(BaseModel):
    count: int
    models: list[ModelSummary]
    next: str


class ModelDescription(BaseModel):
    model: str
    title: str
    family: str
    task: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    example_input: dict[str, Any]
    price: str | None = Field(None, description="The unit price, its source and date; or why none is known.")
    next: str


class JobSummary(BaseModel):
    request_id: str | None = None  # None: the submit never got an answer
    model: str
    status: str = Field(description="submitting, submitted, unknown, rejected, completed, failed or cancelled")
    submitted_at: str
    error: str | None = None
    media_urls: list[str] = Field(default_factory=list)
    downloads: list[str] = Field(default_factory=list, description="Local paths of downloaded files.")
    cost: Cost | None = None


class JobList(BaseModel):
    count: int
    jobs: list[JobSummary]
    spend: str | None = Field(None, description="What was spent today and this month.")
    next: str


class UploadAnswer(BaseModel):
    url: str
    kind: Literal["uploaded", "data_uri"]
    content_type: str
    size: int
    note: str

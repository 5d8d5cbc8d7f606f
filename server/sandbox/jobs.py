"""The sandbox's settings and its jobs' lives by the clock, as fal's queue reports them: IN_QUEUE for the job's
`queue_seconds`, then IN_PROGRESS for its `run_seconds` with a log line at each step, then COMPLETED (at once when
cancelled).

A job's whole life follows from its record and the wall clock: it carries its own timing, and nothing changes it
but a cancel. So any sandbox process that can read the record answers for the job as the one that took it would
(see `server/sandbox/book.py`, which keeps the records, in memory or in a folder).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Flavor = Literal["fal", "uniapi"]
Phase = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]


@dataclass
class SandboxConfig:
    key: str = field(default_factory=lambda: "sandbox-" + secrets.token_hex(8))
    queue_seconds: float = 1.0
    run_seconds: float = 3.0
    log_lines: int = 4
    flavor: Flavor = "fal"
    retention_seconds: float = 3600.0
    stream_ping_seconds: float = 15.0
    stream_tick_seconds: float = 0.05
    drop_streams_after: int | None = None  # reset each status stream after this many events (a dropped stream)
    # Where the jobs are kept: None keeps them in this process; a folder lets every sandbox started on it answer for
    # them (`--sandbox` under a client that starts a server per call: the next call finds the job).
    jobs_dir: Path | None = None


@dataclass
class SandboxJob:
    request_id: str
    endpoint_id: str
    body: dict[str, Any]
    submitted_at: float  # wall clock (time.time()): every sandbox process reads the same one
    queue_seconds: float
    run_seconds: float
    queue_position: int = 0
    fail_with: str | None = None
    cancelled_at: float | None = None
    # When it was made, as the upstream reports it (created_at): fixed, while tests move `submitted_at` to move
    # the job along its life.
    created_wall: float = field(default_factory=time.time)

    @property
    def cancelled(self) -> bool:
        return self.cancelled_at is not None

    @property
    def completed_at(self) -> float:
        """When it is (or will be) COMPLETED: cancelled, or queued and run to the end."""
        finished = self.submitted_at + self.queue_seconds + self.run_seconds
        return finished if self.cancelled_at is None else min(self.cancelled_at, finished)


def new_job(
    request_id: str,
    endpoint_id: str,
    body: dict[str, Any],
    config: SandboxConfig,
    *,
    queue_position: int = 0,
    fail_with: str | None = None,
) -> SandboxJob:
    """A job submitted now, with the sandbox's timing. Keep it with `JobBook.__setitem__`, and store it again after
    every change (a job read from the book is a copy)."""
    now = time.time()
    return SandboxJob(
        request_id,
        endpoint_id,
        body,
        submitted_at=now,
        queue_seconds=config.queue_seconds,
        run_seconds=config.run_seconds,
        queue_position=queue_position,
        fail_with=fail_with,
        created_wall=now,
    )


def job_phase(job: SandboxJob, now: float | None = None) -> tuple[Phase, float]:
    """The job's status at `now` (time.time(); default: now) and the seconds since it was submitted. This is the
    one function every route family's status answer starts from (fal's queue names; map them to a family's own)."""
    at = time.time() if now is None else now
    elapsed = at - job.submitted_at
    if at >= job.completed_at:
        return "COMPLETED", elapsed
    if elapsed < job.queue_seconds:
        return "IN_QUEUE", elapsed
    return "IN_PROGRESS", elapsed


def job_logs(job: SandboxJob, config: SandboxConfig, elapsed: float) -> list[dict[str, Any]]:
    """The log lines written by `elapsed` seconds after the submit, in fal's shape."""
    running = max(0.0, elapsed - job.queue_seconds)
    count = config.log_lines
    step = job.run_seconds / max(count, 1)
    shown = min(count, int(running / step) + 1) if running > 0 else 0
    return [
        {
            "message": f"Generating: step {i + 1} of {count}",
            "level": "INFO",
            "source": "user",
            "timestamp": _iso(job.created_wall + job.queue_seconds + i * step),
        }
        for i in range(shown)
    ]


def _iso(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int((wall % 1) * 1e6):06d}"

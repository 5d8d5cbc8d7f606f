"""The sandbox's settings and its jobs' lives by the clock, as fal's queue reports them: IN_QUEUE for
`queue_seconds`, then IN_PROGRESS for `run_seconds` with a log line at each step, then COMPLETED (at once when
cancelled)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal

Flavor = Literal["fal", "uniapi"]


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


@dataclass
class SandboxJob:
    request_id: str
    endpoint_id: str
    body: dict[str, Any]
    submitted_at: float
    queue_position: int
    fail_with: str | None = None
    cancelled: bool = False
    created_wall: float = field(default_factory=time.time)
    completed_at: float | None = None


def job_phase(job: SandboxJob, config: SandboxConfig, now: float) -> tuple[str, float]:
    """The job's status at `now` (time.monotonic()) and the seconds since it was submitted."""
    elapsed = now - job.submitted_at
    if job.cancelled or elapsed >= config.queue_seconds + config.run_seconds:
        if job.completed_at is None:
            job.completed_at = now
        return "COMPLETED", elapsed
    if elapsed < config.queue_seconds:
        return "IN_QUEUE", elapsed
    return "IN_PROGRESS", elapsed


def job_logs(job: SandboxJob, config: SandboxConfig, elapsed: float) -> list[dict[str, Any]]:
    """The log lines written by `elapsed` seconds after the submit, in fal's shape."""
    running = max(0.0, elapsed - config.queue_seconds)
    count = config.log_lines
    step = config.run_seconds / max(count, 1)
    shown = min(count, int(running / step) + 1) if running > 0 else 0
    return [
        {
            "message": f"Generating: step {i + 1} of {count}",
            "level": "INFO",
            "source": "user",
            "timestamp": _iso(job.created_wall + config.queue_seconds + i * step),
        }
        for i in range(shown)
    ]


def _iso(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int((wall % 1) * 1e6):06d}"

"""What this server process knows about the jobs it submitted: model, submit time, collected log lines.

Kept in memory; it lets status and result calls omit `model` for jobs submitted here.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from server.upstream import LogLine

LOG_HISTORY = 200  # log lines kept per job; get_fal_status returns the most recent ones


@dataclass
class JobRecord:
    request_id: str
    endpoint_id: str
    submitted_at: float = field(default_factory=time.time)
    logs: deque[LogLine] = field(default_factory=lambda: deque(maxlen=LOG_HISTORY))
    _seen: set[tuple[str | None, str]] = field(default_factory=set)

    def add_logs(self, lines: tuple[LogLine, ...] | list[LogLine]) -> None:
        """Merge a status answer's log window, de-duplicated by (timestamp, message)."""
        for line in lines:
            if line.key not in self._seen:
                self._seen.add(line.key)
                self.logs.append(line)


class JobRegistry:
    def __init__(self) -> None:
        self._jobs: dict[str, JobRecord] = {}

    def remember(self, request_id: str, endpoint_id: str) -> JobRecord:
        record = JobRecord(request_id, endpoint_id)
        self._jobs[request_id] = record
        return record

    def get(self, request_id: str) -> JobRecord | None:
        return self._jobs.get(request_id)

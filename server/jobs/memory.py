"""Per-process memory of recent jobs: their model, submit time, and the log lines collected so far.

The ledger is the durable record; this keeps what only matters while the process runs (log de-duplication
across status answers), bounded to the most recently used jobs.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from server.upstream.reports import LogLine

LOG_HISTORY = 200  # log lines kept per job; get_fal_status returns the most recent ones
MAX_JOBS = 1000  # jobs remembered; the least recently used are forgotten first


@dataclass
class JobRecord:
    request_id: str
    endpoint_id: str
    submitted_at: float | None
    logs: deque[LogLine] = field(default_factory=lambda: deque(maxlen=LOG_HISTORY))
    finished: bool = False  # its outcome is in the ledger: answer from there
    _seen: set[tuple[str | None, str]] = field(default_factory=set)

    def add_logs(self, lines: tuple[LogLine, ...] | list[LogLine]) -> None:
        """Merge a status answer's log window, de-duplicated by (timestamp, message)."""
        for line in lines:
            if line.key not in self._seen:
                if len(self._seen) >= LOG_HISTORY * 4:
                    self._seen.clear()  # bounded; at worst an old line is shown twice
                self._seen.add(line.key)
                self.logs.append(line)


class JobRegistry:
    def __init__(self) -> None:
        self._jobs: OrderedDict[str, JobRecord] = OrderedDict()

    def remember(self, request_id: str, endpoint_id: str, submitted_at: float | None) -> JobRecord:
        """Remember a job; `submitted_at` is None when its submit time is not known here."""
        record = JobRecord(request_id, endpoint_id, submitted_at)
        self._jobs[request_id] = record
        while len(self._jobs) > MAX_JOBS:
            self._jobs.popitem(last=False)
        return record

    def get(self, request_id: str) -> JobRecord | None:
        record = self._jobs.get(request_id)
        if record is not None:
            self._jobs.move_to_end(request_id)
        return record

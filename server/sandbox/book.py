"""Where the sandbox keeps its jobs: in this process, or in a folder that every sandbox process started on it shares.

A client that starts a server per call (the MCP Inspector's CLI, LangChain's default client) submits through one
`--sandbox` process and asks for the result through the next: the second must know the job. A job's life follows
from its record and the clock (`server/sandbox/jobs.py`), so sharing the records is enough: one JSON file per job,
replaced whole on every change (atomic, so a reader in another process sees the old record or the new one), and
removed once the job has outlived fal's retention.

Every route family uses it the same way: `book[job.request_id] = job` to keep a new or changed job, `book.get(id)`
to find one (a copy: store it again after changing it), `book.prune(retention)` now and then.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator, MutableMapping
from dataclasses import asdict
from pathlib import Path

from server.sandbox.jobs import SandboxJob

# Request ids name files here: only plain tokens (what the sandbox hands out, a UUID) can be one.
_FILE_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_SUFFIX = ".json"
_PARTIAL_PREFIX = ".partial-"


class JobBook(MutableMapping[str, SandboxJob]):
    """The sandbox's jobs by request id; in `folder` when one is given, else in memory. Reads return copies in
    both cases, so a change not stored back is lost in both (and a test in memory catches it)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self._memory: dict[str, SandboxJob] = {}
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    def __getitem__(self, request_id: str) -> SandboxJob:
        if self.folder is None:
            return copy.copy(self._memory[request_id])
        path = self._path(request_id)
        if path is None:
            raise KeyError(request_id)
        try:
            return SandboxJob(**json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise KeyError(request_id) from None
        except (ValueError, TypeError):  # a record from another version, or damaged: no such job
            raise KeyError(request_id) from None

    def __setitem__(self, request_id: str, job: SandboxJob) -> None:
        if request_id != job.request_id or not _FILE_SAFE.fullmatch(request_id):
            raise ValueError(f"a job is kept under its own request id, a plain token: not {request_id[:80]!r}")
        if self.folder is None:
            self._memory[request_id] = copy.copy(job)
            return
        path = self.folder / f"{request_id}{_SUFFIX}"
        fd, partial = tempfile.mkstemp(prefix=_PARTIAL_PREFIX, suffix=_SUFFIX, dir=self.folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(asdict(job), file)
            os.replace(partial, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise

    def __delitem__(self, request_id: str) -> None:
        if self.folder is None:
            del self._memory[request_id]
            return
        path = self._path(request_id)
        if path is None:
            raise KeyError(request_id)
        try:
            path.unlink()
        except FileNotFoundError:
            raise KeyError(request_id) from None

    def __iter__(self) -> Iterator[str]:
        if self.folder is None:
            return iter(list(self._memory))
        return iter(
            sorted(
                path.name.removesuffix(_SUFFIX)
                for path in self.folder.glob(f"*{_SUFFIX}")
                if not path.name.startswith(_PARTIAL_PREFIX)
            )
        )

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def prune(self, retention_seconds: float, now: float | None = None) -> None:
        """Forget the jobs completed more than `retention_seconds` ago, as fal does (keeps the folder small)."""
        at = time.time() if now is None else now
        for request_id in list(self):
            job = self.get(request_id)
            if job is not None and at - job.completed_at > retention_seconds:
                with contextlib.suppress(KeyError):
                    del self[request_id]

    def _path(self, request_id: str) -> Path | None:
        assert self.folder is not None
        return self.folder / f"{request_id}{_SUFFIX}" if _FILE_SAFE.fullmatch(request_id) else None

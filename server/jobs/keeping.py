"""The job lifecycle, one home: the durable ledger, this process's memory of each job, which jobs a wait
is following, and the job changes it publishes. Protocol-free; every ledger call runs in a worker thread, so the
event loop never waits on it.

A row is written before a submit is sent and settled whatever happens to the submit; a result or failure is
kept the first time it is seen, so it outlives fal's short retention. Each change is published on `events`.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from server.errors import FalError, JobFailedError, SubmitOutcomeUnknownError, redact
from server.jobs.events import JobEvents
from server.jobs.memory import JobRegistry
from server.money.estimate import billed_usd
from server.upstream.outputs import find_media
from server.upstream.reports import SubmitReceipt

if TYPE_CHECKING:
    from server.jobs.ledger import JobLedger, JobRow
    from server.jobs.ledger.base import Charge

log = logging.getLogger(__name__)

T = TypeVar("T")
# A data URI's head: its media type, then any parameters (";base64", ";name=cat.png", ";charset=utf-8").
_DATA_URI = re.compile(r"^data:([\w.+/-]*)((?:;[^,;]*)*),", re.IGNORECASE)
# A file inlined as bare base64 (the field wants no data: prefix, as Kling's): long, one word, base64's alphabet.
_RAW_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{1024,}={0,2}")
# Ledger states that are final: status and result are answered from the ledger, with no upstream request.
FINISHED = frozenset({"completed", "failed", "cancelled"})


class Jobs:
    def __init__(
        self, open_ledger: Callable[[], JobLedger], *, secrets: list[str], max_stored_result_bytes: int
    ) -> None:
        self._open_ledger = open_ledger
        self._ledger: JobLedger | None = None
        self._opening = threading.Lock()
        self._secrets = secrets
        self._max_stored_result_bytes = max_stored_result_bytes
        self.memory = JobRegistry()
        self.events = JobEvents()
        # Jobs get_fal_result waits of this process follow right now, and how many waits each: the watcher leaves
        # them alone (no double polling), and the last wait to end gives the job's lease back.
        self.followed: Counter[str] = Counter()
        self.wait_leases: set[str] = set()  # jobs whose lease a wait of this process took (see jobs.following)

    @property
    def ledger(self) -> JobLedger:
        """Opened on first use: the first `tools/list` answer needs no SQLite."""
        if self._ledger is None:
            with self._opening:  # worker threads may ask at once
                if self._ledger is None:
                    self._ledger = self._open_ledger()
        return self._ledger

    async def db(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a (short, blocking) ledger call in a worker thread."""
        return await anyio.to_thread.run_sync(functools.partial(call, *args, **kwargs))

    def close(self) -> None:
        """Give this instance's leases back (its jobs are followed elsewhere at once), then close the ledger."""
        if self._ledger is not None:
            from server.jobs.ledger import LedgerError  # loaded already: the ledger is open

            try:
                self._ledger.release_all()
            except LedgerError as exc:
                log.warning("could not give the job leases back (they expire by themselves): %s", exc)
            self._ledger.close()

    # ---- reading ---------------------------------------------------------------------------------------------

    async def get(self, request_id: str) -> JobRow | None:
        return await self.db(self.ledger.get, request_id)

    async def recent_request_ids(self, limit: int) -> list[str]:
        """The request ids of the `limit` jobs submitted last, newest first; no row is read whole."""
        return await self.db(self.ledger.recent_request_ids, limit=limit)

    async def list(
        self, *, state: str | None, endpoint_id: str | None, since: float | None, limit: int
    ) -> list[JobRow]:
        return await self.db(self.ledger.list_jobs, state=state, endpoint_id=endpoint_id, since=since, limit=limit)

    # ---- writing ---------------------------------------------------------------------------------------------

    @asynccontextmanager
    async def submit_record(
        self,
        endpoint_id: str,
        body: dict[str, Any],
        *,
        stored: dict[str, Any] | None = None,
        charge: Charge | None = None,
    ) -> AsyncIterator[RowHandle]:
        """Write the job's row before the submit is sent, and settle it whatever happens to the submit. `stored` is
        the body as the ledger should keep it (local files sent inline named by reference), when it differs.

        Outcome unknown (a timeout, a dropped answer, or this call being cancelled mid-way) stays recorded as
        'unknown' with what was sent and when; a definite refusal is 'rejected'. Nothing is ever re-sent.
        """
        kept = self.stored_input(body if stored is None else stored)
        # With a charge, the budget check and the row are one atomic step: a refusal writes nothing (BudgetError).
        handle = RowHandle(self, await self.db(self.ledger.begin_submit, endpoint_id, kept, charge))
        try:
            yield handle
        except SubmitOutcomeUnknownError as exc:
            await self._settle(self.ledger.mark_unknown, handle.row_id, str(exc))
            exc.message = (
                f"{exc.message} It is recorded as job #{handle.row_id} with status 'unknown' (see list_fal_jobs)."
            )
            exc.args = (exc.message,)
            raise
        except FalError as exc:
            await self._settle(self.ledger.mark_rejected, handle.row_id, str(exc))
            raise
        except BaseException:
            await self._settle(
                self.ledger.mark_unknown, handle.row_id, "the submit was interrupted before an answer came"
            )
            raise

    async def _settle(self, mark: Callable[[int, str], bool], row_id: int, reason: str) -> None:
        with anyio.CancelScope(shield=True):
            await self.db(mark, row_id, reason)

    def stored_input(self, body: dict[str, Any]) -> dict[str, Any]:
        """What the ledger keeps of an input: data URIs and bare base64 shortened to a placeholder, any key text
        removed."""
        text = json.dumps(_shorten_data_uris(body), ensure_ascii=False)
        for secret in self._secrets:
            text = redact(text, secret)
        kept: dict[str, Any] = json.loads(text)
        return kept

    async def keep_output(
        self, request_id: str, output: dict[str, Any], billable_units: float | None = None
    ) -> float | None:
        """Store a result the first time it is seen; too large a result keeps just its media URLs. With the
        upstream's `billable_units`, the job's bill (units x its estimate's unit price) replaces its estimate;
        without them the estimate stands, marked as one. Returns the bill in USD, when there is one."""
        urls = [media.url for media in find_media(output)]
        size = len(json.dumps(output, ensure_ascii=False).encode())
        kept = output
        if size > self._max_stored_result_bytes:
            kept = {"_note": f"result of {size} bytes not kept (FAL_MCP_MAX_STORED_RESULT_BYTES)", "media_urls": urls}
        billed = None
        with anyio.CancelScope(shield=True):
            changed = await self.db(self.ledger.store_result, request_id, kept, urls)
            if billable_units is not None:
                billed = await self.db(self._settle_bill, request_id, billable_units)
        self._finished(request_id, changed or billed is not None)
        return billed

    def _settle_bill(self, request_id: str, billable_units: float) -> float | None:
        """In a worker thread: the job's bill from its estimate's unit price, kept in the ledger. Settling twice (two
        followers kept the result) writes the same bill."""
        row = self.ledger.get(request_id)
        usd = billed_usd(row.estimate if row else None, billable_units)
        if usd is None or not self.ledger.settle_cost(request_id, usd):
            return None
        return usd

    async def keep_failure(self, request_id: str, error: JobFailedError) -> None:
        with anyio.CancelScope(shield=True):
            changed = await self.db(
                self.ledger.mark_failed, request_id, error.message, cancelled=error.error_type == "cancelled"
            )
        self._finished(request_id, changed)

    async def record_download(self, request_id: str, url: str, path: str, sha256: str, size: int) -> None:
        if await self.db(self.ledger.record_download, request_id, url, path, sha256, size):
            self.changed(request_id)

    def _finished(self, request_id: str, changed: bool) -> None:
        record = self.memory.get(request_id)
        if record is not None:
            record.finished = True
        if changed:
            self.changed(request_id)

    def changed(self, request_id: str) -> None:
        """Publish a change this process made to the job on `events` (listeners there also hear other instances')."""
        self.events.publish(request_id)


class RowHandle:
    """The ledger row of one submit in flight."""

    def __init__(self, jobs: Jobs, row_id: int) -> None:
        self._jobs = jobs
        self.row_id = row_id

    async def submitted(self, receipt: SubmitReceipt) -> None:
        with anyio.CancelScope(shield=True):  # the upstream accepted it: the id must be kept
            changed = await self._jobs.db(
                self._jobs.ledger.mark_submitted, self.row_id, receipt.request_id, receipt.queue_position
            )
        if changed:
            self._jobs.changed(receipt.request_id)


def _shorten_data_uris(value: Any) -> Any:
    if isinstance(value, str):
        match = _DATA_URI.match(value)
        if match:
            encoding = ";base64" if ";base64" in match.group(2).lower() else ""
            return f"data:{match.group(1)}{encoding},… ({len(value)} characters, not kept)"
        if _RAW_BASE64.fullmatch(value):
            return f"… ({len(value)} characters of base64, not kept)"
        return value
    if isinstance(value, list):
        return [_shorten_data_uris(item) for item in value]
    if isinstance(value, dict):
        return {key: _shorten_data_uris(item) for key, item in value.items()}
    return value

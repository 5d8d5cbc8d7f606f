"""Job changes, as a seam: "job X changed" goes from whoever changes a job's ledger row to whoever listens.

Publishers: `Jobs` publishes each change it makes (a request id recorded, an outcome or a download kept), and the
ledger's relay publishes the changes other instances make (LISTEN/NOTIFY on PostgreSQL, a cheap look at the file
every second on SQLite; see `JobLedger.relay_changes`). So a listener in this process hears of every change to a
job, whichever instance made it.

Listeners: waits (a result kept elsewhere ends a wait here) and anything that tells clients a job changed (e.g.
MCP resource subscriptions to `fal://jobs/{request_id}`). Subscribe with a callback, or iterate `changes()`:

    unsubscribe = events.subscribe(lambda request_id: ...)   # synchronous, called on the event loop
    async for request_id in events.changes(): ...             # an async iterator, buffered
    with events.watching(request_id) as watch: await watch.wait(seconds)   # one job

Only the request id is carried: read the ledger for what changed. Delivery is at least once and carries no order
across jobs; a listener must be quick and must not raise (a raising one is logged and skipped).
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager

import anyio

log = logging.getLogger(__name__)

Listener = Callable[[str], None]
CHANGES_BUFFER = 1000  # request ids an async iterator holds unread; beyond that the oldest are dropped


class JobEvents:
    def __init__(self) -> None:
        # keyed by a token per subscription, so one callable may be subscribed twice
        self._listeners: dict[object, Listener] = {}

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(request_id)` on every change; returns an idempotent unsubscribe."""
        token = object()
        self._listeners[token] = listener

        def unsubscribe() -> None:
            self._listeners.pop(token, None)

        return unsubscribe

    def publish(self, request_id: str) -> None:
        """Tell every listener in this process that the job changed. Call on the event loop."""
        for listener in list(self._listeners.values()):
            try:
                listener(request_id)
            except Exception:  # one broken listener must not starve the others or fail the publisher
                log.exception("a job change listener failed")

    async def changes(self) -> AsyncIterator[str]:
        """Every change from now on, as an async iterator (until the caller stops iterating)."""
        send, receive = anyio.create_memory_object_stream[str](CHANGES_BUFFER)

        def deliver(request_id: str) -> None:
            try:
                send.send_nowait(request_id)
            except anyio.WouldBlock:  # a reader that fell far behind loses the oldest change, not the newest
                receive.receive_nowait()
                send.send_nowait(request_id)

        unsubscribe = self.subscribe(deliver)
        try:
            async with receive:
                async for request_id in receive:
                    yield request_id
        finally:
            unsubscribe()
            send.close()

    @contextmanager
    def watching(self, request_id: str) -> Iterator[JobWatch]:
        """For the block, a `JobWatch` on one job: no change is missed between two of its waits."""
        watch = JobWatch()
        unsubscribe = self.subscribe(lambda changed: watch.fire() if changed == request_id else None)
        try:
            yield watch
        finally:
            unsubscribe()


class JobWatch:
    def __init__(self) -> None:
        self._changed = anyio.Event()

    def fire(self) -> None:
        self._changed.set()

    async def wait(self, seconds: float = math.inf) -> bool:
        """Until the job changes (True; at once if it changed since the last wait) or `seconds` pass (False)."""
        with anyio.move_on_after(seconds):
            await self._changed.wait()
        if not self._changed.is_set():
            return False
        self._changed = anyio.Event()
        return True

"""fal's status stream (server-sent events): one status object per event, closed after COMPLETED.

Parsed with httpx-sse. A refused stream (404/405/501, or not an event stream) raises `StreamRefused` so the
caller can remember that this provider has none; a stream that drops mid-way just ends, and the caller falls
back to polling.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack

import anyio
import httpx
from httpx_sse import SSEError, aconnect_sse

from server.fal.client import FalQueueClient
from server.fal.reports import StatusReport, parse_status
from server.fal.responses import parse_json

# fal pings about every 15 s; a silence much longer than that is a dead stream.
STREAM_READ_TIMEOUT_SECONDS = 40.0
NO_STREAM_STATUS = frozenset({404, 405, 501})


class StreamRefused(Exception):
    def __init__(self, permanent: bool) -> None:
        super().__init__("status stream refused")
        self.permanent = permanent


async def stream_status(
    upstream: FalQueueClient, endpoint_id: str, request_id: str
) -> AsyncGenerator[StatusReport, None]:
    """Yield each status the stream reports until COMPLETED (then stop) or until the stream ends.

    The stream's first answer must come within the request timeout, like any other answer (the long read
    timeout is for the quiet stretches between events); one that does not is treated as a dropped stream.
    """
    url, headers = upstream.prepare(upstream.status_path(endpoint_id, request_id) + "/stream")
    timeout = httpx.Timeout(STREAM_READ_TIMEOUT_SECONDS, connect=upstream.settings.connect_timeout)
    try:
        async with AsyncExitStack() as stack:
            source = None
            with anyio.move_on_after(upstream.settings.request_timeout):
                source = await stack.enter_async_context(
                    aconnect_sse(upstream.http, "GET", url, params={"logs": "1"}, headers=headers, timeout=timeout)
                )
            if source is None:
                return  # no answer in time: the caller polls for the rest of its wait
            if source.response.status_code != 200:
                raise StreamRefused(permanent=source.response.status_code in NO_STREAM_STATUS)
            async for event in source.aiter_sse():
                data = parse_json(event.data)
                if not isinstance(data, dict):
                    continue  # not JSON, or unreadably deep: the next event, or a poll, will tell
                report = parse_status(upstream.scrub(data))
                yield report
                if report.state == "COMPLETED":
                    return
    except SSEError:
        raise StreamRefused(permanent=True) from None
    except httpx.TransportError:
        return  # dropped: the caller polls for the rest of its wait

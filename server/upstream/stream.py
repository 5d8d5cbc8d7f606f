"""fal's status stream (server-sent events): one status object per event, closed after COMPLETED.

Opened with httpx-sse; its events are read here, within two caps, because the library keeps a line, and an
event's lines, for as long as the upstream sends them: one event of 300 MB without a line end would be held
whole. Each event may be at most FAL_MCP_MAX_STREAM_EVENT_BYTES and the whole stream FAL_MCP_MAX_STREAM_BYTES
(decoded bytes, see server.upstream.bodies); past either, the stream is closed and the caller polls instead.

A refused stream (404/405/501, or not an event stream) raises `StreamRefused` so the caller can remember that
this provider has none; a stream that drops mid-way, or is cut off at a cap, just ends, and the caller falls
back to polling.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AsyncExitStack

import anyio
import httpx
from httpx_sse import aconnect_sse

from server.upstream.bodies import BodyError, BodyTooLarge, iter_decoded
from server.upstream.client import UpstreamClient
from server.upstream.reports import StatusReport, parse_status
from server.upstream.responses import parse_json

log = logging.getLogger(__name__)

# fal pings about every 15 s; a silence much longer than that is a dead stream.
STREAM_READ_TIMEOUT_SECONDS = 40.0
NO_STREAM_STATUS = frozenset({404, 405, 501})
_LINE_END = re.compile(rb"\r\n|\r|\n")


class StreamRefused(Exception):
    def __init__(self, permanent: bool) -> None:
        super().__init__("status stream refused")
        self.permanent = permanent


class EventTooLarge(Exception):
    pass


async def stream_status(upstream: UpstreamClient, path: str) -> AsyncGenerator[StatusReport, None]:
    """Yield each status the stream reports until COMPLETED (then stop) or until the stream ends.

    The stream's first answer must come within the request timeout, like any other answer (the long read
    timeout is for the quiet stretches between events); one that does not is treated as a dropped stream.
    """
    settings = upstream.settings
    url, headers = upstream.prepare(path, "fal")  # `path`: the job's status stream on the fal queue route
    timeout = httpx.Timeout(STREAM_READ_TIMEOUT_SECONDS, connect=settings.connect_timeout)
    try:
        async with AsyncExitStack() as stack:
            source = None
            with anyio.move_on_after(settings.request_timeout):
                source = await stack.enter_async_context(
                    aconnect_sse(upstream.http, "GET", url, params={"logs": "1"}, headers=headers, timeout=timeout)
                )
            if source is None:
                return  # no answer in time: the caller polls for the rest of its wait
            response = source.response
            if response.status_code != 200:
                raise StreamRefused(permanent=response.status_code in NO_STREAM_STATUS)
            if "text/event-stream" not in response.headers.get("content-type", "").partition(";")[0]:
                raise StreamRefused(permanent=True)  # an answer, but no event stream: this provider has none
            body = iter_decoded(response, settings.max_stream_bytes)
            async for data in event_data(body, settings.max_stream_event_bytes):
                value = parse_json(data)
                if not isinstance(value, dict):
                    continue  # not JSON, or unreadably deep: the next event, or a poll, will tell
                report = parse_status(upstream.scrub(value, raw=data))
                yield report
                if report.state == "COMPLETED":
                    return
    except BodyTooLarge:
        log.warning(
            "The status stream sent more than FAL_MCP_MAX_STREAM_BYTES (%d bytes), so it was closed; the wait polls "
            "instead.",
            settings.max_stream_bytes,
        )
    except EventTooLarge:
        log.warning(
            "The status stream sent an event larger than FAL_MCP_MAX_STREAM_EVENT_BYTES (%d bytes), so it was "
            "closed; the wait polls instead.",
            settings.max_stream_event_bytes,
        )
    except BodyError as exc:
        log.warning("The status stream's answer was %s, so it was closed; the wait polls instead.", exc.reason)
    except httpx.TransportError:
        return  # dropped: the caller polls for the rest of its wait


async def event_data(body: AsyncIterator[bytes], max_event_bytes: int) -> AsyncIterator[bytes]:
    """The data of each event in an event stream (its `data:` lines joined by line ends), as the SSE spec reads
    them; EventTooLarge once one event's lines (field names, comments and line ends included) pass
    `max_event_bytes`, counted as they arrive, so no more than that and one piece of `body` is ever held."""
    partial = bytearray()  # the line not yet ended
    data: list[bytes] = []
    size = 0  # the bytes of the current event's ended lines
    carriage_return = False  # the last piece ended in "\r": a "\n" starting the next one belongs to it
    first = True
    async for piece in body:
        if first:
            piece = piece.removeprefix(b"\xef\xbb\xbf")  # the spec drops a leading byte order mark
            first = False
        start = 1 if carriage_return and piece.startswith(b"\n") else 0
        carriage_return = piece.endswith(b"\r")
        for end in _LINE_END.finditer(piece, start):
            partial += piece[start : end.start()]
            size += len(partial) + end.end() - end.start()
            if size > max_event_bytes:
                raise EventTooLarge
            line, start = bytes(partial), end.end()
            partial.clear()
            if not line:
                if data:
                    yield b"\n".join(data)
                data, size = [], 0
            elif line.startswith(b"data:") or line == b"data":
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
            # other fields (event, id, retry) and comments (": ping") carry nothing a status needs
        partial += piece[start:]
        if size + len(partial) > max_event_bytes:
            raise EventTooLarge

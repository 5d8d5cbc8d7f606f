"""Scripted faults for the sandbox upstream: error answers, slow bodies, reset connections, dropped answers.

Tests inject them to check that every tool ends cleanly, in time, and never submits twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass
class Fault:
    """A scripted answer for the next request whose "METHOD /path" contains `match` (consumed once each)."""

    match: str
    status: int = 500
    body: bytes = b'{"detail": "Internal Server Error"}'
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    delay: float = 0.0  # seconds to wait before answering (an answer that comes too late)
    times: int = 1
    # "answer": the scripted answer; "slow_body": its body trickles out over `delay` seconds; "reset": the
    # connection dies before an answer; "drop_answer": the request is really handled (a submit creates its
    # job), then the connection dies before the answer arrives.
    mode: Literal["answer", "slow_body", "reset", "drop_answer"] = "answer"


class FaultBook:
    """The faults waiting to be used, each taken by the first request whose "METHOD /path" it matches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pending: list[Fault] = []

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self.pending.append(fault)

    def take(self, label: str, modes: frozenset[str]) -> Fault | None:
        with self._lock:
            fault = next((f for f in self.pending if f.match in label and f.mode in modes), None)
            if fault is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.pending.remove(fault)
        return fault

    async def answer(self, request: Request) -> Response | None:
        """The scripted answer for this request, if a fault of an answering mode matches."""
        fault = self.take(f"{request.method} {request.url.path}", ANSWER_MODES)
        if fault is None:
            return None
        if fault.mode == "slow_body":
            return StreamingResponse(
                _trickle(fault.body, fault.delay),
                status_code=fault.status,
                headers=fault.headers,
                media_type=fault.content_type,
            )
        if fault.delay:
            await _pause(request, fault.delay)
        return Response(fault.body, status_code=fault.status, headers=fault.headers, media_type=fault.content_type)


ANSWER_MODES = frozenset({"answer", "slow_body"})
DROP_MODES = frozenset({"reset", "drop_answer"})
_PROMISED_LENGTH = b"100000"  # announced, never delivered: the client sees the connection die mid-answer


class DroppingConnections:
    """ASGI wrapper for the faults that kill the connection: uvicorn cannot be told to reset one, but a response
    that promises a body and dies before it is, to an HTTP client, a connection dropped mid-answer."""

    def __init__(self, faults: FaultBook, record: Callable[[Request], Awaitable[None]], app: ASGIApp) -> None:
        self._faults = faults
        self._record = record
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        fault = self._faults.take(f"{scope['method']} {scope['path']}", DROP_MODES)
        if fault is None:
            await self._app(scope, receive, send)
            return
        if fault.mode == "reset":
            await self._record(Request(scope, receive))
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-length", _PROMISED_LENGTH)]}
            )
            raise ConnectionResetError("sandbox: connection reset on purpose")

        async def drop(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"content-length"]
                await send({**message, "headers": [*headers, (b"content-length", _PROMISED_LENGTH)]})
                return
            raise ConnectionResetError("sandbox: answer dropped on purpose")

        await self._app(scope, receive, drop)


async def _pause(request: Request, seconds: float) -> None:
    """Wait `seconds`, or until the client hangs up: an answer nobody waits for any more is not worth holding the
    connection (stopping the sandbox waits for every open connection). The request's body was read already, so
    the next message is the disconnect."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while (await request.receive())["type"] != "http.disconnect":
                pass


async def _trickle(body: bytes, seconds: float) -> AsyncIterator[bytes]:
    step = max(1, len(body) // 10)
    for start in range(0, len(body), step):
        await asyncio.sleep(seconds / 10)
        yield body[start : start + step]

"""server/stdio_pipes.py on its own: lines read from a pipe as the SDK's transport reads them, and whole messages
written into a pipe, small ones on the event loop and large ones from a thread, even when the pipe is full or was
made non-blocking. (The stdio tests run the whole server over real pipes.)"""

from __future__ import annotations

import fcntl
import os
import threading

import anyio
import pytest

from server.stdio_pipes import PipeLines, PipeWriter

pytestmark = pytest.mark.anyio


async def _lines_of(chunks: list[bytes]) -> list[str]:
    read_end, write_end = os.pipe()

    def feed() -> None:
        with os.fdopen(write_end, "wb", buffering=0) as pipe:
            for chunk in chunks:
                pipe.write(chunk)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        return [line async for line in PipeLines(read_end)]
    finally:
        feeder.join()
        os.close(read_end)


async def test_lines_come_whole_however_the_bytes_arrive() -> None:
    chunks = [b'{"a":', b' 1}\n{"b": 2}\n\n', b"x" * 200_000, b"\n", b'{"last": true}']
    assert await _lines_of(chunks) == ['{"a": 1}\n', '{"b": 2}\n', "\n", "x" * 200_000 + "\n", '{"last": true}']


async def test_undecodable_bytes_are_replaced_as_the_sdk_does() -> None:
    assert await _lines_of([b"caf\xc3", b"\xa9 \xff\n"]) == ["caf\u00e9 \ufffd\n"]


async def test_end_of_input_ends_the_lines() -> None:
    assert await _lines_of([]) == []


@pytest.mark.parametrize("non_blocking", [False, True])
async def test_messages_arrive_whole_in_order_through_a_full_pipe(non_blocking: bool) -> None:
    read_end, write_end = os.pipe()
    if non_blocking:
        fcntl.fcntl(write_end, fcntl.F_SETFL, fcntl.fcntl(write_end, fcntl.F_GETFL) | os.O_NONBLOCK)
    messages = [f'{{"n": {n}, "pad": "{"y" * (n * 9_000)}"}}\n' for n in range(12)]  # up to ~100 KB: over a pipe
    received = bytearray()

    def drain() -> None:
        while chunk := os.read(read_end, 4096):
            received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        writer = PipeWriter(write_end)
        with anyio.fail_after(60):
            for message in messages:
                await writer.write(message)
                await writer.flush()
    finally:
        os.close(write_end)
        reader.join(timeout=60)
        os.close(read_end)
    assert received.decode() == "".join(messages)

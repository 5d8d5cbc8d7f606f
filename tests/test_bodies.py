"""Bounded reading of upstream bodies (server.upstream.bodies) and of status-stream events (server.upstream.stream),
protocol-free: every coding read back exactly however the bytes are split, bombs stopped within a step of the
cap, and the event stream read as the SSE spec reads it, within its event cap."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator, Iterable

import httpx
import pytest

from server.upstream.bodies import STEP_BYTES, BodyTooLarge, BodyUndecodable, BoundedDecoder, content_codings
from server.upstream.stream import EventTooLarge, event_data

pytestmark = pytest.mark.anyio

ANSWER = b'{"status": "COMPLETED", "logs": [' + b'{"message": "step"},' * 20_000 + b'{"message": "done"}]}'


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)  # the same bytes in every process (xdist compares parameters)


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush()


def _decode(coding: str, body: bytes, split: int, limit: int = 10 * len(ANSWER)) -> tuple[bytes, int]:
    """The decoded body fed `split` bytes at a time, and the largest piece that came out."""
    decoder = BoundedDecoder(httpx.Headers({"Content-Encoding": coding}), limit)
    pieces = [p for start in range(0, len(body), split) for p in decoder.feed(body[start : start + split])]
    pieces += list(decoder.finish())
    return b"".join(pieces), max((len(p) for p in pieces), default=0)


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("identity", ANSWER),
        ("gzip", _gzip(ANSWER)),
        ("x-gzip", _gzip(ANSWER)),
        ("deflate", zlib.compress(ANSWER)),
        ("deflate", _raw_deflate(ANSWER)),
        ("gzip, gzip", _gzip(_gzip(ANSWER))),
        ("deflate, gzip", _gzip(zlib.compress(ANSWER))),
        ("identity, gzip", _gzip(ANSWER)),
    ],
    ids=["identity", "gzip", "x-gzip", "deflate", "raw-deflate", "double-gzip", "deflate-then-gzip", "identity-gzip"],
)
@pytest.mark.parametrize("split", [1, 7, 4096, 10**9])
def test_every_coding_reads_back_exactly_in_bounded_pieces(coding: str, body: bytes, split: int) -> None:
    if split == 1 and len(body) > 50_000:
        split = 3  # byte by byte would be slow for the uncompressed answer; 3 still splits every boundary
    decoded, largest = _decode(coding, body, split)
    assert decoded == ANSWER
    assert largest <= STEP_BYTES


BOMBS = {  # built when used: 50 MB of zeros are not worth holding from collection on
    "gzip": lambda: _gzip(bytes(20_000_000)),
    "gzip, gzip": lambda: _gzip(_gzip(bytes(50_000_000))),
    "identity": lambda: bytes(3_000_000),  # not compressed, but one large network chunk
}


@pytest.mark.parametrize("coding", sorted(BOMBS))
def test_a_bomb_stops_within_a_step_of_the_cap(coding: str) -> None:
    body = BOMBS[coding]()
    decoder = BoundedDecoder(httpx.Headers({"Content-Encoding": coding}), 1_000_000)
    with pytest.raises(BodyTooLarge, match=r"larger than 1,000,000 bytes once decoded"):
        for _ in decoder.feed(body):
            pass
    assert decoder.size <= 1_000_000 + STEP_BYTES


@pytest.mark.parametrize(
    ("header", "said"),
    [
        ("br", "not offered"),
        ("zstd", "not offered"),
        ("compress", "not offered"),
        ("gzip, gzip, gzip", "3 times over"),
    ],
)
def test_codings_not_offered_are_refused(header: str, said: str) -> None:
    with pytest.raises(BodyUndecodable, match=said):
        content_codings(httpx.Headers({"Content-Encoding": header}))


def test_codings_are_read_in_order_applied() -> None:
    assert content_codings(httpx.Headers([("Content-Encoding", "deflate"), ("Content-Encoding", " GZIP ")])) == [
        "deflate",
        "gzip",
    ]
    assert content_codings(httpx.Headers({})) == []


def test_corrupt_compressed_data_is_undecodable() -> None:
    with pytest.raises(BodyUndecodable, match="could not be decoded"):
        _decode("gzip", b"this is not gzip at all", 5)
    with pytest.raises(BodyUndecodable, match="could not be decoded"):
        _decode("deflate", b"\xff" * 40, 40)


# ---- the event stream ----------------------------------------------------------------------------------------


async def _events(pieces: Iterable[bytes], cap: int = 1000) -> list[bytes]:
    async def body() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    return [data async for data in event_data(body(), cap)]


@pytest.mark.parametrize("split", [1, 2, 3, 1000])
async def test_events_are_read_as_the_spec_reads_them(split: int) -> None:
    stream = (
        b"\xef\xbb\xbf: a comment, then a ping\r\n\r\n"
        b'event: status\r\ndata: {"a": 1}\r\nid: 7\r\n\r\n'
        b"data:first\rdata: second\r\r"
        b"data\n\n"
        b"retry: 10\n\n"
        b'data: {"b": 2}\n\n'
        b"data: never dispatched"
    )
    pieces = [stream[i : i + split] for i in range(0, len(stream), split)]
    assert await _events(pieces) == [b'{"a": 1}', b"first\nsecond", b"", b'{"b": 2}']


async def test_an_event_without_a_line_end_stops_at_the_cap() -> None:
    endless = (b"a" * 100 for _ in range(1_000_000))
    with pytest.raises(EventTooLarge):
        await _events([b"data: ", *endless])


async def test_an_event_of_many_short_lines_stops_at_the_cap() -> None:
    with pytest.raises(EventTooLarge):
        await _events(b"data: x\n" for _ in range(1_000_000))
    # and many events of the same total are fine, each under the cap
    assert len(await _events(b"data: x\n\n" for _ in range(10_000))) == 10_000

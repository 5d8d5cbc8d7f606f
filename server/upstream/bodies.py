"""Reading an upstream answer's body within a size cap, however the upstream encoded it.

httpx undoes a Content-Encoding on its own, one network chunk at a time, with no bound on what a chunk expands
to: a 300 KB gzip answer inflates to gigabytes, a 313-byte double gzip to 50 MB, before any cap sees a byte.
So every upstream read (answers, the status stream, storage) takes the raw bytes and inflates them here, at
most STEP_BYTES at a time, counting the decoded bytes against the cap and stopping as soon as they pass it:
what a read holds is at most its cap plus a step per coding layer, whatever the upstream sends.

Requests offer no compression (ACCEPT_ENCODING: the answers are small JSON, and a stream of events gains
little); an upstream that compresses anyway is read the same bounded way when it uses gzip or deflate, at most
MAX_CODINGS layers deep. Any other coding is refused: it was not offered, and it cannot be inflated in steps
with the standard library.

Protocol-free; used by every upstream adapter (the fal queue today, the Kling and Luma routes beside it).
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterator, Sequence

import httpx

# Sent with every upstream request: without it any coding is acceptable (RFC 9110).
ACCEPT_ENCODING = "identity"
STEP_BYTES = 64 * 1024  # the most one inflate step produces, and so the most a read overshoots its cap by
MAX_CODINGS = 2  # "gzip, gzip" is read (and bounded); a deeper stack of layers is refused
_GZIP_NAMES = frozenset({"gzip", "x-gzip"})
_DEFLATE_NAMES = frozenset({"deflate"})


class BodyError(Exception):
    """An answer that was not read; `reason` completes the sentence "the upstream's answer was ..."."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BodyTooLarge(BodyError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"larger than {limit:,} bytes once decoded")
        self.limit = limit


class BodyUndecodable(BodyError):
    pass


def content_codings(headers: httpx.Headers) -> list[str]:
    """The codings applied to the body, in the order applied (`identity` left out), or BodyUndecodable."""
    names = [
        name.strip().lower()
        for value in headers.get_list("content-encoding")
        for name in value.split(",")
        if name.strip()
    ]
    codings = [name for name in names if name != "identity"]
    if len(codings) > MAX_CODINGS:
        raise BodyUndecodable(f"compressed {len(codings)} times over (at most {MAX_CODINGS} layers are read)")
    if any(name not in _GZIP_NAMES | _DEFLATE_NAMES for name in codings):
        # The name is the upstream's to choose: it is not quoted.
        raise BodyUndecodable("compressed in a coding that was not offered")
    return codings


class _Inflater:
    """One coding layer, undone at most STEP_BYTES of output at a time."""

    def __init__(self, coding: str) -> None:
        gzip = coding in _GZIP_NAMES
        self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16 if gzip else zlib.MAX_WBITS)
        # deflate is meant to be zlib-wrapped, but some servers send it raw: read as wrapped until its 2-byte
        # header proves wrong, then from the start again as raw (like httpx).
        self._may_be_raw = not gzip
        self._head = b""

    def feed(self, data: bytes) -> Iterator[bytes]:
        while True:
            out = self._step(data)
            if out:
                yield out
            data = self._zlib.unconsumed_tail
            if not data and len(out) < STEP_BYTES:
                return  # all input taken, and zlib holds no more output for it

    def finish(self) -> Iterator[bytes]:
        # Anything zlib still holds comes out in steps too: flush() would hand it over in one piece.
        return self.feed(b"")

    def _step(self, data: bytes) -> bytes:
        try:
            out = self._zlib.decompress(data, STEP_BYTES)
        except zlib.error:
            if not self._may_be_raw:
                raise BodyUndecodable("compressed data that could not be decoded") from None
            self._may_be_raw = False
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            return self._step(self._head + data)
        if self._may_be_raw:
            self._head += data[: 2 - len(self._head)]
            self._may_be_raw = len(self._head) < 2
        return out


class BoundedDecoder:
    """Raw body bytes in, decoded bytes out in pieces of at most STEP_BYTES; BodyTooLarge once more than
    `limit` decoded bytes came out (checked after each piece, so no more than `limit + STEP_BYTES` ever do)."""

    def __init__(self, headers: httpx.Headers, limit: int) -> None:
        self._layers = [_Inflater(coding) for coding in reversed(content_codings(headers))]  # the last applied first
        self._limit = limit
        self.size = 0

    def feed(self, raw: bytes) -> Iterator[bytes]:
        return self._counted(_through(self._layers, raw))

    def finish(self) -> Iterator[bytes]:
        return self._counted(_finish(self._layers))

    def _counted(self, pieces: Iterator[bytes]) -> Iterator[bytes]:
        for piece in pieces:
            self.size += len(piece)
            if self.size > self._limit:
                raise BodyTooLarge(self._limit)
            yield piece


def _through(layers: Sequence[_Inflater], data: bytes) -> Iterator[bytes]:
    if not layers:
        # identity: split, so a large network chunk is counted (and refused) before it is kept whole
        for start in range(0, len(data), STEP_BYTES):
            yield data[start : start + STEP_BYTES]
        return
    for piece in layers[0].feed(data):
        yield from _through(layers[1:], piece)


def _finish(layers: Sequence[_Inflater]) -> Iterator[bytes]:
    for index, layer in enumerate(layers):
        for piece in layer.finish():
            yield from _through(layers[index + 1 :], piece)


async def iter_decoded(response: httpx.Response, limit: int) -> AsyncIterator[bytes]:
    """The decoded body of a streamed `response`, piece by piece, refused past `limit` decoded bytes."""
    if response.is_stream_consumed:
        # Read before us, so already decoded by httpx: only an in-memory test transport does that.
        if len(response.content) > limit:
            raise BodyTooLarge(limit)
        yield response.content
        return
    decoder = BoundedDecoder(response.headers, limit)
    async for raw in response.aiter_raw():
        for piece in decoder.feed(raw):
            yield piece
    for piece in decoder.finish():
        yield piece


async def read_decoded(response: httpx.Response, limit: int) -> bytes:
    """The whole decoded body of a streamed `response`, or BodyTooLarge / BodyUndecodable."""
    content = bytearray()
    async for piece in iter_decoded(response, limit):
        content += piece
    return bytes(content)


def decoded_response(response: httpx.Response, content: bytes) -> httpx.Response:
    """A finished copy of `response` carrying the decoded `content`: without its coding and length headers, so
    httpx does not try to decode it a second time."""
    headers = httpx.Headers(response.headers)
    for name in ("content-encoding", "content-length", "transfer-encoding"):
        if name in headers:
            del headers[name]
    return httpx.Response(status_code=response.status_code, headers=headers, content=content, request=response.request)

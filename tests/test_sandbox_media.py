"""The sandbox's media files are real: an MP4 a browser can index and play (ftyp, moov with an H.264 track, mdat),
a PNG and a WAV whose headers and payloads agree; served with their MIME types, and a job's output carries the
file's size as fal's does. (tests/browser/ plays them in Chromium.)"""

from __future__ import annotations

import struct
import zlib

import httpx
import pytest

from server.sandbox import Sandbox
from server.sandbox.media import sample_for, sample_mp4, sample_png, sample_wav
from tests.helpers import SEED_INPUT, SEED_MODEL, connect

CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


def _boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of each ISO BMFF box in `data`, in order."""
    boxes, at = [], 0
    while at < len(data):
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        assert size >= 8 and at + size <= len(data), (kind, size)
        boxes.append((kind, data[at + 8 : at + size]))
        at += size
    return boxes


def _find(data: bytes, path: list[bytes]) -> bytes:
    for kind, payload in _boxes(data):
        if kind == path[0]:
            return payload if len(path) == 1 else _find(payload, path[1:])
    raise AssertionError(f"no {path[0]!r} box")


def test_the_mp4_has_an_index_and_a_two_second_h264_track() -> None:
    data = sample_mp4()
    assert [kind for kind, _ in _boxes(data)] == [b"ftyp", b"moov", b"mdat"]  # moov first: plays while loading
    assert 1024 < len(data) < 64 * 1024
    mvhd = _find(data, [b"moov", b"mvhd"])
    timescale, duration = struct.unpack(">II", mvhd[12:20])
    assert duration / timescale == 2.0
    stbl = [b"moov", b"trak", b"mdia", b"minf", b"stbl"]
    stsd = _find(data, [*stbl, b"stsd"])
    assert stsd[12:16] == b"avc1" and b"avcC" in stsd  # H.264, with its parameter sets
    width, height = struct.unpack(">HH", stsd[8 + 8 + 24 : 8 + 8 + 28])
    assert (width, height) == (96, 64)
    stsz = _find(data, [*stbl, b"stsz"])
    count = struct.unpack(">I", stsz[8:12])[0]
    sizes = struct.unpack(f">{count}I", stsz[12:])
    (offset,) = struct.unpack(">I", _find(data, [*stbl, b"stco"])[8:12])
    mdat_start = sum(8 + len(payload) for kind, payload in _boxes(data)[:2]) + 8  # after ftyp, moov, mdat's header
    assert count == 20 and offset == mdat_start and offset + sum(sizes) == len(data)


def test_the_png_decodes_to_its_declared_size() -> None:
    data = sample_png()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = {}, 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        assert struct.unpack(">I", data[at + 8 + length : at + 12 + length])[0] == zlib.crc32(kind + body)
        chunks[kind] = body
        at += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (width, height, depth, colour) == (64, 64, 8, 2)
    assert len(zlib.decompress(chunks[b"IDAT"])) == height * (1 + width * 3)
    assert b"IEND" in chunks


def test_the_wav_is_one_second_of_pcm() -> None:
    data = sample_wav()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and struct.unpack("<I", data[4:8])[0] == len(data) - 8
    fmt_format, channels, rate, byte_rate, block, bits = struct.unpack("<HHIIHH", data[20:36])
    assert (fmt_format, channels, bits) == (1, 1, 16) and byte_rate == rate * block
    assert data[36:40] == b"data" and struct.unpack("<I", data[40:44])[0] == rate * block  # one second


def test_the_files_are_the_same_on_every_call() -> None:
    assert sample_mp4() == sample_mp4() and sample_png() == sample_png() and sample_wav() == sample_wav()


@pytest.mark.parametrize(
    ("name", "content_type"), [("output.mp4", "video/mp4"), ("output.png", "image/png"), ("output.wav", "audio/wav")]
)
def test_the_sandbox_serves_them_with_their_types(sandbox: Sandbox, name: str, content_type: str) -> None:
    answer = httpx.get(f"{sandbox.base_url}/files/some-request/{name}")
    assert answer.status_code == 200 and answer.headers["content-type"] == content_type
    assert answer.content == sample_for(name)[0]


@pytest.mark.anyio
async def test_a_sandbox_output_carries_the_files_size(sandbox: Sandbox, settings) -> None:
    async with connect(settings) as client:
        submitted = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
        request_id = submitted.structured_content["request_id"]
        sandbox.finish_now(request_id)
        result = await client.call_tool("get_fal_result", {"request_id": request_id})
    video = result.structured_content["output"]["video"]
    assert video["file_size"] == len(httpx.get(video["url"]).content) == len(sample_mp4())


SIZE = len(sample_mp4())


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, SIZE - 1),
        ("bytes=-50", SIZE - 50, SIZE - 1),
        ("bytes=0-999999", 0, SIZE - 1),  # a range past the end stops at the end
    ],
)
def test_the_sandbox_answers_byte_ranges_as_a_cdn_does(sandbox: Sandbox, header: str, first: int, last: int) -> None:
    """Safari plays a <video> only from a server that answers ranges; Chromium seeks only then."""
    answer = httpx.get(f"{sandbox.base_url}/files/job/output.mp4", headers={"Range": header})
    assert answer.status_code == 206
    assert answer.content == sample_mp4()[first : last + 1]
    assert answer.headers["content-range"] == f"bytes {first}-{last}/{SIZE}"
    assert answer.headers["accept-ranges"] == "bytes"


def test_a_range_outside_the_file_is_refused(sandbox: Sandbox) -> None:
    size = len(sample_mp4())
    answer = httpx.get(f"{sandbox.base_url}/files/job/output.mp4", headers={"Range": f"bytes={size}-"})
    assert answer.status_code == 416 and answer.headers["content-range"] == f"bytes */{size}"
    whole = httpx.get(f"{sandbox.base_url}/files/job/output.mp4")
    assert whole.status_code == 200 and whole.content == sample_mp4() and whole.headers["accept-ranges"] == "bytes"

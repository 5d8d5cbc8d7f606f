"""Saving output media to disk: bytes and hash, atomicity under failure and cancellation, size and time caps,
hostile names, refused URLs and redirects, no credentials sent, and existing files never overwritten."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import ipaddress
import os
import random
import re
import stat
import threading
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from server.files.downloads import DownloadError, DownloadLimits, SavedFile, download_media, safe_file_name

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
CONTENT = random.Random(7).randbytes(3 * MiB + 123)  # several write batches, not a multiple of anything
REQUEST_ID = "764cabcf-91d2-4a5e-b2f4-0123456789ab"
LIMITS = DownloadLimits(max_bytes=16 * MiB, timeout_seconds=10, allow_loopback=True)  # the host is 127.0.0.1
PRIVATE_HEADER_VALUE = "header-value-abc123"


# ---- a media host on 127.0.0.1 ------------------------------------------------------------------------------


@dataclass
class MediaHost:
    base_url: str = ""
    versioned: bytes = b"first version"
    seen: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)  # (path, headers) per request

    def paths(self) -> list[str]:
        return [path for path, _ in self.seen]

    def url(self, path: str) -> str:
        return self.base_url + path


def _media_app(host: MediaHost) -> Starlette:
    async def file(request: Request) -> Response:
        return Response(CONTENT, media_type="video/mp4")

    async def versioned(request: Request) -> Response:
        return Response(host.versioned, media_type="video/mp4")

    async def big_chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"\x01" * MiB

    async def big(request: Request) -> Response:
        return StreamingResponse(big_chunks(), media_type="video/mp4", headers={"Content-Length": str(4 * MiB)})

    async def big_chunked(request: Request) -> Response:
        return StreamingResponse(big_chunks(), media_type="video/mp4")  # no Content-Length: chunked

    async def slow_chunks() -> AsyncIterator[bytes]:
        yield b"\x02" * (2 * MiB)  # enough for a first write to disk
        for _ in range(100):
            await asyncio.sleep(0.1)
            yield b"\x03" * 65536

    async def slow(request: Request) -> Response:
        return StreamingResponse(slow_chunks(), media_type="video/mp4")

    async def redirect(request: Request) -> Response:
        return RedirectResponse("/files/redirected.mp4", status_code=302)  # relative, as CDNs often answer

    async def chain(request: Request) -> Response:
        left = int(request.path_params["left"])
        target = f"/chain/{left - 1}" if left > 0 else "/files/chained.mp4"
        return RedirectResponse(host.url(target), status_code=307)

    async def to_file(request: Request) -> Response:
        return RedirectResponse("file:///etc/passwd", status_code=302)

    async def to_metadata(request: Request) -> Response:
        return RedirectResponse("http://169.254.169.254/latest/meta-data/iam/", status_code=301)

    async def missing(request: Request) -> Response:
        return PlainTextResponse("Not Found. " * 2000, status_code=404, headers={"X-Private": PRIVATE_HEADER_VALUE})

    async def headers(request: Request) -> Response:
        return Response(b"seen", media_type="image/png")

    async def compressed(request: Request) -> Response:
        return Response(gzip.compress(CONTENT), media_type="video/mp4", headers={"Content-Encoding": "gzip"})

    async def double_compressed(request: Request) -> Response:
        # ~250 bytes that are 50 MB of zeros, gzip twice over
        bomb = gzip.compress(gzip.compress(bytes(50 * 1_000_000)))
        return Response(bomb, media_type="video/mp4", headers={"Content-Encoding": "gzip, gzip"})

    async def compressed_error(request: Request) -> Response:
        said = gzip.compress(b'{"detail": "' + b"gone " * 2000 + b'"}')
        return Response(said, status_code=404, media_type="application/json", headers={"Content-Encoding": "gzip"})

    return Starlette(
        routes=[
            Route("/files/{name:path}", file),
            Route("/versioned/{name}", versioned),
            Route("/big", big),
            Route("/big-chunked", big_chunked),
            Route("/slow", slow),
            Route("/redirect", redirect),
            Route("/chain/{left}", chain),
            Route("/redirect-file", to_file),
            Route("/redirect-metadata", to_metadata),
            Route("/missing", missing),
            Route("/headers", headers),
            Route("/compressed", compressed),
            Route("/double-compressed", double_compressed),
            Route("/compressed-error", compressed_error),
        ]
    )


@pytest.fixture(scope="module")
def media_host() -> Iterator[MediaHost]:
    host = MediaHost()
    app = _media_app(host)

    async def recorder(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]
            host.seen.append((scope["path"], headers))
        await app(scope, receive, send)

    config = uvicorn.Config(recorder, host="127.0.0.1", port=0, log_level="error", lifespan="off")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not running.started:
        assert thread.is_alive() and time.monotonic() < deadline, "media host did not start"
        time.sleep(0.01)
    host.base_url = f"http://127.0.0.1:{running.servers[0].sockets[0].getsockname()[1]}"
    yield host
    running.should_exit = True
    thread.join(timeout=5)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:  # no proxies from the environment
        yield client


# Host names these tests use, resolved here: the tests never ask a real resolver (no traffic beyond loopback).
PUBLIC_ADDRESS = "93.184.215.14"
FAKE_DNS = {"v3.fal.media": [PUBLIC_ADDRESS]}


async def fake_resolve(host: str, port: int) -> list[str]:
    if host in FAKE_DNS:
        return FAKE_DNS[host]
    ipaddress.ip_address(host)  # an IP literal resolves to itself; any other name is not known here
    return [host]


async def _download(
    http: httpx.AsyncClient,
    url: str,
    directory: Path,
    *,
    name: str | None = "clip.mp4",
    content_type: str | None = "video/mp4",
    limits: DownloadLimits = LIMITS,
) -> SavedFile:
    return await download_media(
        http,
        url,
        directory=directory,
        request_id=REQUEST_ID,
        suggested_name=name,
        content_type=content_type,
        limits=limits,
        resolve=fake_resolve,
    )


def _entries(directory: Path) -> list[str]:
    """Everything in the folder, hidden files included (a leftover .part would show here)."""
    return sorted(os.listdir(directory)) if directory.exists() else []


# ---- downloads -----------------------------------------------------------------------------------------------


async def test_download_writes_the_bytes_and_their_sha256(
    http: httpx.AsyncClient, media_host: MediaHost, tmp_path: Path
) -> None:
    directory = tmp_path / "new" / "outputs"
    saved = await _download(http, media_host.url("/files/abc/output.mp4"), directory)

    assert saved.path == directory / "764cabcf-clip.mp4"
    assert saved.path.read_bytes() == CONTENT
    assert saved.size == len(CONTENT)
    assert saved.sha256 == hashlib.sha256(CONTENT).hexdigest()
    assert saved.content_type == "video/mp4"
    assert saved.url == media_host.url("/files/abc/output.mp4")
    assert _entries(directory) == ["764cabcf-clip.mp4"]  # no temporary file left
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


async def test_name_comes_from_the_url_and_the_answer_type_when_none_is_given(
    http: httpx.AsyncClient, media_host: MediaHost, tmp_path: Path
) -> None:
    saved = await _download(http, media_host.url("/files/abc/my%20clip"), tmp_path, name=None, content_type=None)
    assert saved.path.name == "764cabcf-my clip.mp4"  # no extension in the URL: the answer's video/mp4
    assert saved.content_type == "video/mp4"


async def test_an_allowed_redirect_is_followed(http: httpx.AsyncClient, media_host: MediaHost, tmp_path: Path) -> None:
    saved = await _download(http, media_host.url("/redirect"), tmp_path)
    assert saved.path.read_bytes() == CONTENT
    assert saved.url == media_host.url("/redirect")  # the URL asked for, not where it led


async def test_at_most_three_redirects_are_followed(
    http: httpx.AsyncClient, media_host: MediaHost, tmp_path: Path
) -> None:
    saved = await _download(http, media_host.url("/chain/2"), tmp_path)  # 3 redirects
    assert saved.path.read_bytes() == CONTENT

    with pytest.raises(DownloadError, match="more than 3 times") as caught:
        await _download(http, media_host.url("/chain/3"), tmp_path / "four")  # 4 redirects
    assert caught.value.kind == "download"
    assert _entries(tmp_path / "four") == []


@pytest.mark.parametrize(
    ("path", "reason"),
    [("/redirect-file", "file: URL"), ("/redirect-metadata", "link-local")],
)
async def test_a_redirect_to_a_refused_location_is_not_followed(
    http: httpx.AsyncClient, media_host: MediaHost, tmp_path: Path, path: str, reason: str
) -> None:
    requested: list[str] = []

    async def record(request: httpx.Request) -> None:
        requested.append(str(request.url))

    http.event_hooks["request"].append(record)
    with pytest.raises(DownloadError, match=reason) as caught:
        await _download(http, media_host.url(path), tmp_path)
    assert requested == [media_host.url(path)]  # refused, not tried (169.254.169.254 would hang)
    assert "169.254" not in str(caught.value) and "passwd" not in str(caught.value)  # the Location is not quoted
    assert _entries(tmp_path) == []


async def test_an_error_answer_is_reported_briefly(
    http: httpx.AsyncClient, media_host: MediaHost, tmp_path: Path
) -> None:
    with pytest.raises(DownloadError) as caught:
        await _download(http, media_host.url("/missing"), tmp_path)
    message = str(caught.value)
    assert caught.value.status_code == 404
    assert "HTTP 404" in message and "Not Found" in message and "expired" in message
    assert len(message) < 400  # a short excerpt of the 22,000-character body at most
    assert PRIVATE_HEADER_VALUE not in message
    assert _entries(tmp_path) == []


async def test_a_compressed_answer_is_refused(http: httpx.AsyncClient, media_host: MediaHost, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="compressed"):
        await _download(http, media_host.url("/compressed"), tmp_path)
    assert _entries(tmp_path) == []


async def test_a_compression_bomb_is_refused_without_inflating_a_byte(
    http: httpx.AsyncClient, media_host: MediaHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("a download inflated its body")

    monkeypatch.setattr(zlib, "decompressobj", refuse)
    with pytest.raises(DownloadError, match="compressed"):
        await _download(http, media_host.url("/double-compressed"), tmp_path)
    with pytest.raises(DownloadError, match="HTTP 404") as caught:
        await _download(http, media_host.url("/compressed-error"), tmp_path)
    # the compressed bytes are no excerpt worth quoting
    assert "answered HTTP 404 instead of the file" in str(caught.value), str(caught.value)
    assert _entries(tmp_path) == []


# ---- size and time caps, atomicity ---------------------------------------------------------------------------


async def test_an_announced_size_over_the_cap_is_refused_before_reading(
    http: httpx.AsyncClient, media_host: MediaHost, tmp_path: Path
) -> None:
    limits = DownloadLimits(max_bytes=MiB, timeout_seconds=10, allow_loopback=True)
    with pytest.raises(DownloadError, match="larger than the 1,048,576-byte download limit") as caught:
        await _download(http, media_host.url("/big"), tmp_path, limits=limits)
    assert str(4 * MiB) not in str(caught.value)  # the Content-Length value is not quoted
    assert _entries(tmp_path) == []


async def test_a_stream_over_the_cap_is_aborted_and_removed(
    http: httpx.AsyncClient, media_host: MediaHost, tmp_path: Path
) -> None:
    # No Content-Length: the cap trips while streaming, after a first MiB has been written to the .part file.
    limits = DownloadLimits(max_bytes=MiB + MiB // 2, timeout_seconds=10, allow_loopback=True)
    with pytest.raises(DownloadError, match="larger than"):
        await _download(http, media_host.url("/big-chunked"), tmp_path, limits=limits)
    assert _entries(tmp_path) == []


async def test_the_time_limit_stops_a_slow_download(
    http: httpx.AsyncClient, media_host: MediaHost, tmp_path: Path
) -> None:
    limits = DownloadLimits(max_bytes=64 * MiB, timeout_seconds=0.5, allow_loopback=True)
    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"longer than the 0\.5-second limit"):
        await _download(http, media_host.url("/slow"), tmp_path, limits=limits)
    assert time.monotonic() - started < 8  # cut at its limit: the whole answer takes over 10 s
    assert _entries(tmp_path) == []


async def test_a_download_cancelled_midway_leaves_nothing(
    http: httpx.AsyncClient, media_host: MediaHost, tmp_path: Path
) -> None:
    part_sizes: list[int] = []

    async def cancel_once_written(scope: anyio.CancelScope) -> None:
        while max(part_sizes, default=0) < MiB:
            for entry in tmp_path.glob(".*.part"):
                with contextlib.suppress(FileNotFoundError):
                    part_sizes.append(entry.stat().st_size)
            await anyio.sleep(0.02)
        scope.cancel()  # mid-way: the whole answer takes over 10 s

    with anyio.fail_after(60), anyio.CancelScope() as scope:
        async with anyio.create_task_group() as group:
            group.start_soon(cancel_once_written, scope)
            await _download(http, media_host.url("/slow"), tmp_path)
    assert scope.cancelled_caught
    assert max(part_sizes, default=0) >= MiB  # it was cancelled with bytes already on disk
    assert _entries(tmp_path) == []


# ---- names ---------------------------------------------------------------------------------------------------

HOSTILE_NAMES = [
    "../../etc/passwd",
    "..\\..\\win.ini",
    "CON",
    "con.mp4",
    "LPT1.txt",
    ".bashrc",
    "a\x00b.mp4",
    "x" * 500,
    "",
    "..",
    ".",
    "-rf --no-preserve-root.mp4",
    "vidéo 🎬 клип.mp4",
    "ｅｖｉｌ／．．／ｎａｍｅ.mp4",  # fullwidth look-alikes of / and .
    "clip\u202egpj.exe",  # a right-to-left override hiding an executable
    "name\r\nX-Injected: 1.mp4",
    "C:\\Windows\\System32\\drivers\\etc\\hosts",
]
WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{n}" for p in ("COM", "LPT") for n in range(10)}


@pytest.mark.parametrize("suggested", HOSTILE_NAMES)
async def test_hostile_names_become_a_plain_file_inside_the_folder(
    http: httpx.AsyncClient, media_host: MediaHost, tmp_path: Path, suggested: str
) -> None:
    directory = tmp_path / "out"
    saved = await _download(http, media_host.url("/files/abc/output.mp4"), directory, name=suggested)

    name = saved.path.name
    assert saved.path.parent == directory
    assert saved.path.resolve().parent == directory.resolve()
    assert re.fullmatch(r"764cabcf-[A-Za-z0-9._ -]+\.[a-z0-9]{1,8}", name), name
    assert len(name) <= 100
    assert name.split(".")[0].strip().upper() not in WINDOWS_RESERVED
    assert not name.endswith((".exe", ".txt.exe"))
    assert _entries(directory) == [name]
    assert saved.path.read_bytes() == CONTENT
    assert not (tmp_path / "etc").exists()


@pytest.mark.parametrize(
    ("request_id", "url", "suggested", "content_type", "expected"),
    [
        (REQUEST_ID, "https://v3.fal.media/files/k/output.mp4", None, "video/mp4", "764cabcf-output.mp4"),
        (REQUEST_ID, "https://v3.fal.media/files/k/output.mp4", "../../etc/passwd", None, "764cabcf-passwd.bin"),
        (REQUEST_ID, "https://x.io/a", "..\\..\\win.ini", None, "764cabcf-win.bin"),  # not a media extension
        (REQUEST_ID, "https://x.io/a", "CON", "video/mp4", "764cabcf-CON_.mp4"),
        (REQUEST_ID, "https://x.io/a", ".bashrc", None, "764cabcf-bashrc.bin"),
        (REQUEST_ID, "https://x.io/a", "a\x00b.mp4", None, "764cabcf-ab.mp4"),
        (REQUEST_ID, "https://x.io/a", "", "image/png", "764cabcf-a.png"),
        (REQUEST_ID, "https://x.io/", None, None, "764cabcf-output.bin"),
        (REQUEST_ID, "https://x.io/", "...", "image/jpeg", "764cabcf-output.jpg"),
        (REQUEST_ID, "https://x.io/a", "vidéo.WEBM", None, "764cabcf-video.webm"),
        (REQUEST_ID, "https://x.io/a", "evil.exe", "video/mp4", "764cabcf-evil.mp4"),
        (REQUEST_ID, "https://x.io/a", "clip.mp4; rm -rf ~", "video/mp4", "764cabcf-clip.mp4_ rm -rf _.mp4"),
        (REQUEST_ID, "https://x.io/files/%2E%2E%2Fsecret.png", None, None, "764cabcf-secret.png"),
        ("../../x", "https://x.io/a.png", None, None, "x-a.png"),
        ("", "https://x.io/a.png", None, None, "job-a.png"),
    ],
)
def test_safe_file_name(
    request_id: str, url: str, suggested: str | None, content_type: str | None, expected: str
) -> None:
    assert safe_file_name(request_id, url, suggested, content_type) == expected


def test_safe_file_name_is_at_most_100_characters() -> None:
    name = safe_file_name(REQUEST_ID, "https://x.io/a", "y" * 500 + ".mp4", None)
    assert len(name) == 100 and name.startswith("764cabcf-yyy") and name.endswith("y.mp4")


# ---- refused URLs and credentials ----------------------------------------------------------------------------

REFUSED = [
    ("file:///etc/passwd", "file: URL"),
    ("data:video/mp4;base64,AAAA", "data: URL"),
    ("ftp://example.com/a.mp4", "ftp: URL"),
    ("javascript:alert(1)", "javascript: URL"),
    ("//example.com/a.mp4", "not an absolute"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[fe80::1]/a.mp4", "link-local"),
    ("http://10.0.0.1/a.mp4", "private"),
    ("http://192.168.1.1/a.mp4", "private"),
    ("http://172.16.0.1/a.mp4", "private"),
    ("http://[fd00::1]/a.mp4", "private"),
    ("http://100.64.0.1/a.mp4", "non-public"),
    ("http://224.0.0.1/a.mp4", "multicast"),
    ("http://0.0.0.0/a.mp4", "unspecified"),
    ("http://240.0.0.1/a.mp4", "reserved"),
    ("http://[::1]/a.mp4", "loopback"),
    ("http://127.0.0.1/a.mp4", "loopback"),
    ("http://localhost/a.mp4", "localhost"),
    ("http://2130706433/a.mp4", "loopback"),  # 127.0.0.1 in the resolver's legacy forms
    ("http://0x7f.1/a.mp4", "loopback"),
    ("http://[::ffff:169.254.169.254]/", "link-local"),  # IPv4-mapped
    ("http://[2002:a9fe:a9fe::1]/", "link-local"),  # 6to4 around the metadata address
    ("http://metadata.google.internal/computeMetadata/v1/", "local-network name"),
    ("http://intranet/a.mp4", "local-network name"),
    ("https://user:secret@v3.fal.media/a.mp4", "user name or password"),
    ("not a url at all", "not an absolute"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
async def test_refused_urls_send_no_request(tmp_path: Path, url: str, reason: str) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, content=CONTENT)

    limits = DownloadLimits(max_bytes=16 * MiB, timeout_seconds=10, allow_loopback=False)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(DownloadError, match=reason) as caught:
            await _download(client, url, tmp_path / "out", limits=limits)
    assert sent == []
    assert "secret" not in str(caught.value)
    assert not (tmp_path / "out").exists()  # nothing touched either


async def test_loopback_needs_allow_loopback(http: httpx.AsyncClient, media_host: MediaHost, tmp_path: Path) -> None:
    before = len(media_host.seen)
    limits = DownloadLimits(max_bytes=16 * MiB, timeout_seconds=10, allow_loopback=False)
    with pytest.raises(DownloadError, match="loopback"):
        await _download(http, media_host.url("/files/a.mp4"), tmp_path, limits=limits)
    assert len(media_host.seen) == before


async def test_public_host_names_and_allowed_loopback_are_fetched(tmp_path: Path) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, content=b"pixels", headers={"Content-Type": "image/png"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        public = await _download(
            client,
            "https://v3.fal.media/files/k/out.png",
            tmp_path,
            name=None,
            content_type=None,
            limits=DownloadLimits(1024, 5, allow_loopback=False),
        )
        loopback = await _download(
            client,
            "http://[::1]:8080/files/k/out.png",
            tmp_path / "sandbox",
            name=None,
            content_type=None,
            limits=DownloadLimits(1024, 5, allow_loopback=True),
        )
    assert public.path.read_bytes() == loopback.path.read_bytes() == b"pixels"
    assert public.content_type == "image/png"
    # connected to the address the name resolved to, with the name kept for the Host header and TLS
    assert [str(r.url) for r in sent] == [
        f"https://{PUBLIC_ADDRESS}/files/k/out.png",
        "http://[::1]:8080/files/k/out.png",
    ]
    assert sent[0].headers["host"] == "v3.fal.media" and sent[0].extensions["sni_hostname"] == "v3.fal.media"
    assert sent[1].headers["host"] == "[::1]:8080"
    assert {k.lower() for k in sent[0].headers} == {"host", "accept", "accept-encoding", "user-agent"}


async def test_no_credentials_reach_the_media_host(media_host: MediaHost, tmp_path: Path) -> None:
    # A client carrying every kind of default credential: none of it may go to a media host.
    async with httpx.AsyncClient(
        trust_env=False,
        headers={"Authorization": "Key secret", "X-Api-Key": "secret", "Cookie": "session=secret"},
        cookies={"session": "secret"},
        auth=("user", "secret"),
    ) as client:
        await _download(client, media_host.url("/headers"), tmp_path, name="h.png", content_type="image/png")
    headers = [headers for path, headers in media_host.seen if path == "/headers"][-1]
    names = {name for name, _ in headers}
    assert "authorization" not in names and "cookie" not in names and "x-api-key" not in names
    assert all("secret" not in value for _, value in headers)
    assert dict(headers)["user-agent"].startswith("fal-queue-mcp/")


# ---- existing files ------------------------------------------------------------------------------------------


async def test_an_existing_file_is_reused_if_identical_and_never_overwritten(
    http: httpx.AsyncClient, media_host: MediaHost, tmp_path: Path
) -> None:
    url = media_host.url("/versioned/out.mp4")
    media_host.versioned = b"first version"
    first = await _download(http, url, tmp_path)
    again = await _download(http, url, tmp_path)
    assert again.path == first.path == tmp_path / "764cabcf-clip.mp4"
    assert again.sha256 == first.sha256

    media_host.versioned = b"second version"
    second = await _download(http, url, tmp_path)
    assert second.path == tmp_path / "764cabcf-clip (2).mp4"
    assert second.path.read_bytes() == b"second version"
    assert first.path.read_bytes() == b"first version"  # untouched

    media_host.versioned = b"third version"
    third = await _download(http, url, tmp_path)
    media_host.versioned = b"second version"
    second_again = await _download(http, url, tmp_path)  # matches " (2)", not the first name
    assert third.path == tmp_path / "764cabcf-clip (3).mp4"
    assert second_again.path == second.path
    assert _entries(tmp_path) == ["764cabcf-clip (2).mp4", "764cabcf-clip (3).mp4", "764cabcf-clip.mp4"]


async def test_a_symlink_under_the_final_name_is_left_alone(
    http: httpx.AsyncClient, media_host: MediaHost, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"do not touch")
    directory = tmp_path / "out"
    directory.mkdir()
    (directory / "764cabcf-clip.mp4").symlink_to(outside)
    saved = await _download(http, media_host.url("/files/a.mp4"), directory)
    assert saved.path == directory / "764cabcf-clip (2).mp4"
    assert outside.read_bytes() == b"do not touch"


async def test_a_file_where_the_folder_should_be_is_reported(
    http: httpx.AsyncClient, media_host: MediaHost, tmp_path: Path
) -> None:
    (tmp_path / "taken").write_bytes(b"")
    with pytest.raises(DownloadError, match="not a folder"):
        await _download(http, media_host.url("/files/a.mp4"), tmp_path / "taken")


async def test_an_error_answer_from_a_test_transport_is_reported(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(410, json={"detail": "File expired " * 100})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(DownloadError, match=r"HTTP 410: .*File expired") as caught:
            await _download(client, "https://v3.fal.media/files/k/out.mp4", tmp_path)
    assert len(str(caught.value)) < 400
    assert _entries(tmp_path) == []


async def test_a_numbered_copy_of_a_long_name_stays_within_100_characters(
    http: httpx.AsyncClient, media_host: MediaHost, tmp_path: Path
) -> None:
    url = media_host.url("/versioned/out.mp4")
    media_host.versioned = b"one"
    first = await _download(http, url, tmp_path, name="y" * 500 + ".mp4")
    media_host.versioned = b"two"
    second = await _download(http, url, tmp_path, name="y" * 500 + ".mp4")
    assert len(first.path.name) == 100
    assert len(second.path.name) == 100 and second.path.name.endswith("y (2).mp4")
    assert first.path.read_bytes() == b"one" and second.path.read_bytes() == b"two"

"""Local files as model inputs: content sniffing, confinement to the roots, and upload to (sandbox) fal storage."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from server.errors import AuthError, BadResponseError, FalError
from server.files import local as local_files
from server.files.local import FileRefusedError, LocalMedia, is_local_reference, read_media, sniff_mime, to_data_uri
from server.sandbox.media import sample_wav, tiny_mp4, tiny_png
from server.sandbox.storage import storage_routes
from server.upstream.storage import FalStorageClient
from tests.media_samples import REAL_SAMPLES, ogg_page, wav_header

KEY = "fal-test-key-1234:secret-5678"
PNG = tiny_png()
SECRET_TEXT = b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"


# ---- content sniffing ---------------------------------------------------------------------------


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    payload = major + b"\0\0\0\0" + b"".join(compatible)
    return struct.pack(">I", 8 + len(payload)) + b"ftyp" + payload


SAMPLES = [
    *REAL_SAMPLES,
    ("image/jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"),
    ("image/png", PNG),
    ("image/bmp", b"BM" + struct.pack("<IHHII", 58, 0, 0, 54, 40) + b"\0" * 36),
    ("image/tiff", b"II*\x00\x08\x00\x00\x00"),
    ("image/tiff", b"MM\x00*\x00\x00\x00\x08"),
    ("image/heic", _ftyp(b"heic", b"mif1", b"heic")),
    ("image/avif", _ftyp(b"avif", b"mif1", b"miaf")),
    ("image/avif", _ftyp(b"mif1", b"avif")),
    ("video/mp4", tiny_mp4()),
    ("video/mp4", _ftyp(b"mp42", b"mp42", b"isom")),
    ("video/quicktime", _ftyp(b"qt  ", b"qt  ")),
    ("audio/mp4", _ftyp(b"M4A ", b"M4A ", b"mp42", b"isom")),
    ("video/webm", b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm\x42\x87\x81\x04"),
    ("video/x-matroska", b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82\x88matroska\x42\x87\x81\x04"),
    ("audio/mpeg", b"ID3\x04\x00\x00\x00\x00\x00\x00"),
    ("audio/mpeg", b"ID3\x03\x00\x00\x00\x00\x01\x00TIT2\x00\x00\x00\x05"),
    ("audio/wav", wav_header(b"JUNK" + struct.pack("<I", 28) + b"\0" * 28)),
    ("audio/wav", sample_wav()),
    ("audio/ogg", ogg_page(b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00")),
    ("video/ogg", ogg_page(b"\x80theora" + b"\0" * 34)),
]


@pytest.mark.parametrize(("mime", "head"), SAMPLES, ids=[f"{m}-{i}" for i, (m, _) in enumerate(SAMPLES)])
def test_sniff_recognises_media_by_content(mime: str, head: bytes) -> None:
    assert sniff_mime(head) == mime


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"hello, world\n",
        SECRET_TEXT,
        b"BMW owners club\n minutes of the meeting",  # starts with "BM" but is text
        b"%PDF-1.7\n",
        b"PK\x03\x04\x14\x00",
        b"\x7fELF\x02\x01\x01",
        b"RIFF\x00\x00\x00\x00AVI LIST",
        _ftyp(b"pdf "),
        b"\x1a\x45\xdf\xa3\x80",  # EBML with no known DocType
        b"\xff\xff\xff\xff",  # sync bits but invalid MPEG fields
        b"\xef\xbb\xbf<svg xmlns='http://www.w3.org/2000/svg'/>",
    ],
)
def test_sniff_refuses_everything_else(head: bytes) -> None:
    assert sniff_mime(head) is None


# ---- references and reading ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "local"),
    [
        ("/Users/me/cat.jpg", True),
        ("~/Pictures/cat.jpg", True),
        ("file:///Users/me/cat.jpg", True),
        ("FILE://localhost/tmp/cat.jpg", True),
        ("https://example.com/cat.jpg", False),
        ("http://127.0.0.1/cat.jpg", False),
        ("data:image/png;base64,iVBORw0KGgo=", False),
        ("cat.jpg", False),
        ("~", False),
        ("", False),
    ],
)
def test_is_local_reference(value: str, local: bool) -> None:
    assert is_local_reference(value) is local


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_reads_a_media_file_inside_the_roots(tmp_path: Path) -> None:
    path = _write(tmp_path / "photos" / "cat.png", PNG)
    media = read_media(str(path), roots=[tmp_path], max_bytes=10_000)
    assert media == LocalMedia(path=path.resolve(), mime="image/png", size=len(PNG), data=PNG)
    assert "data=" not in repr(media)


def test_mime_comes_from_content_not_name(tmp_path: Path) -> None:
    path = _write(tmp_path / "clip.txt", tiny_mp4())
    assert read_media(str(path), roots=[tmp_path], max_bytes=10_000).mime == "video/mp4"


def test_file_url_is_percent_decoded(tmp_path: Path) -> None:
    path = _write(tmp_path / "my cat.png", PNG)
    url = "file://" + str(path).replace(" ", "%20")
    assert read_media(url, roots=[tmp_path], max_bytes=10_000).path == path.resolve()
    url_localhost = "file://localhost" + str(path).replace(" ", "%20")
    assert read_media(url_localhost, roots=[tmp_path], max_bytes=10_000).data == PNG


def test_tilde_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    _write(tmp_path / "Pictures" / "cat.png", PNG)
    media = read_media("~/Pictures/cat.png", roots=[Path("~/Pictures")], max_bytes=10_000)
    assert media.path == (tmp_path / "Pictures" / "cat.png").resolve()


def test_data_uri_round_trip(tmp_path: Path) -> None:
    media = read_media(str(_write(tmp_path / "a.png", PNG)), roots=[tmp_path], max_bytes=10_000)
    uri = to_data_uri(media)
    head, _, payload = uri.partition(",")
    assert head == "data:image/png;base64"
    assert base64.b64decode(payload, validate=True) == PNG


# ---- refusals -----------------------------------------------------------------------------------


def _refusal(reference: str, roots: list[Path], max_bytes: int = 10_000) -> str:
    with pytest.raises(FileRefusedError) as caught:
        read_media(reference, roots=roots, max_bytes=max_bytes)
    assert caught.value.kind == "file_refused"
    return caught.value.message


def test_refuses_etc_passwd_outside_the_roots(tmp_path: Path) -> None:
    message = _refusal("/etc/passwd", [tmp_path])
    assert "outside" in message and str(tmp_path.resolve()) in message and "FAL_MCP_FILE_ROOTS" in message
    assert "root:" not in message
    # A missing file outside the roots gets the same answer, so the roots can't be used to probe the disk.
    assert _refusal("/etc/no-such-file-here", [tmp_path]) == message.replace("/etc/passwd", "/etc/no-such-file-here")


def test_refuses_dot_dot_escapes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _write(tmp_path / "outside.png", PNG)
    root.mkdir()
    assert "outside" in _refusal(f"{root}/../outside.png", [root])


def test_refuses_with_no_roots(tmp_path: Path) -> None:
    message = _refusal(str(_write(tmp_path / "a.png", PNG)), [])
    assert "FAL_MCP_FILE_ROOTS" in message and "turned off" in message


@pytest.mark.parametrize("name", ["notes.txt", "id_rsa", "holiday.jpg"])
def test_refuses_non_media_inside_the_roots_without_quoting_it(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path / name, SECRET_TEXT)
    message = _refusal(str(path), [tmp_path])
    assert "not an image, video or audio file" in message
    assert "PRIVATE KEY" not in message and "b3BlbnNz" not in message


def test_refuses_a_symlink_that_leads_outside_the_roots(tmp_path: Path) -> None:
    root = tmp_path / "root"
    target = _write(tmp_path / "elsewhere" / "real.png", PNG)  # valid media: only the root check can refuse it
    root.mkdir()
    (root / "link.png").symlink_to(target)
    message = _refusal(str(root / "link.png"), [root])
    assert "outside" in message and str(target) not in message


def test_refuses_an_oversize_file_without_opening_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "big.png", PNG + b"\0" * 5000)
    opened: list[object] = []
    real_open = os.open
    monkeypatch.setattr(local_files.os, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    message = _refusal(str(path), [tmp_path], max_bytes=1000)
    assert f"{len(PNG) + 5000:,} bytes" in message and "1,000-byte" in message
    assert "FAL_MCP_MAX_UPLOAD_BYTES" in message and "URL" in message
    assert opened == []


def test_a_file_that_grows_after_the_stat_is_cut_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "growing.png", PNG + b"\0" * 5000)
    real_lstat, resolved = os.lstat, str(path.resolve())

    def small_lstat(target: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        info = real_lstat(target, *args, **kwargs)
        if str(target) != resolved:
            return info
        fields = list(info)
        fields[6] = 10  # st_size as it was "before" the file grew
        return os.stat_result(fields)

    monkeypatch.setattr(local_files.os, "lstat", small_lstat)
    read: list[int] = []
    real_read = os.read
    monkeypatch.setattr(local_files.os, "read", lambda fd, n: read.append(n) or real_read(fd, n))
    message = _refusal(str(path), [tmp_path], max_bytes=1000)
    assert "over the 1,000-byte limit" in message
    assert sum(read) <= 1001


def test_refuses_a_directory(tmp_path: Path) -> None:
    (tmp_path / "folder.png").mkdir()
    assert "is a folder" in _refusal(str(tmp_path / "folder.png"), [tmp_path])


def _without_hanging(fn: Any) -> Any:
    """Run fn in a thread; fail (rather than hang the suite) if it does not return within 5 s."""
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(_capture(fn)), daemon=True)
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive(), "reading the FIFO hung"
    return outcome[0]


def _capture(fn: Any) -> Any:
    try:
        return fn()
    except Exception as exc:
        return exc


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_refuses_a_fifo_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    try:
        result = _without_hanging(lambda: read_media(str(fifo), roots=[tmp_path], max_bytes=1000))
    finally:
        _unblock(fifo)
    assert isinstance(result, FileRefusedError) and "named pipe" in result.message


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_swapped_in_after_the_stat_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stat saw a regular file; by the time of open it is a FIFO: O_NONBLOCK and the fstat re-check hold."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    regular = _write(tmp_path / "regular.png", PNG)
    real_lstat, resolved = os.lstat, str(fifo.resolve())
    fake = real_lstat(fifo)

    def lying_lstat(target: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if str(target) == resolved:
            return os.stat_result([real_lstat(regular).st_mode, fake.st_ino, fake.st_dev, *list(fake)[3:]])
        return real_lstat(target, *args, **kwargs)

    monkeypatch.setattr(local_files.os, "lstat", lying_lstat)
    try:
        result = _without_hanging(lambda: read_media(str(fifo), roots=[tmp_path], max_bytes=1000))
    finally:
        _unblock(fifo)
    assert isinstance(result, FileRefusedError) and "named pipe" in result.message


def _unblock(fifo: Path) -> None:
    # If a reader is stuck in open(), opening the write end releases it.
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def test_refuses_a_missing_file_inside_the_roots(tmp_path: Path) -> None:
    message = _refusal(str(tmp_path / "nope.png"), [tmp_path])
    assert "No file exists" in message


@pytest.mark.parametrize("url", ["file://attacker.example.com/share/cat.png", "file://192.168.1.5/etc/passwd"])
def test_refuses_a_file_url_with_a_remote_host(tmp_path: Path, url: str) -> None:
    assert "another machine" in _refusal(url, [tmp_path])


def test_refuses_a_relative_path(tmp_path: Path) -> None:
    assert "not an absolute path" in _refusal("cat.png", [tmp_path])


# ---- upload through the sandbox storage routes, over real HTTP -----------------------------------


class _Recorder:
    """ASGI middleware keeping (method, path, headers) of every request the storage server receives."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen: list[tuple[str, str, dict[str, str]]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            self.seen.append((scope["method"], scope["path"], headers))
        await self.app(scope, receive, send)


class StorageServer:
    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        self.base_url = ""
        self.recorder = _Recorder(Starlette(routes=storage_routes(KEY, self.files, lambda: self.base_url)))


@pytest.fixture
def storage() -> Iterator[StorageServer]:
    server = StorageServer()
    config = uvicorn.Config(server.recorder, host="127.0.0.1", port=0, log_level="error", lifespan="off")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not running.started:
        assert thread.is_alive() and time.monotonic() < deadline, "storage server did not start"
        time.sleep(0.01)
    server.base_url = f"http://127.0.0.1:{running.servers[0].sockets[0].getsockname()[1]}"
    yield server
    running.should_exit = True
    thread.join(timeout=5)


def _media(tmp_path: Path, name: str = "my cat (1).png") -> LocalMedia:
    return read_media(str(_write(tmp_path / name, PNG)), roots=[tmp_path], max_bytes=10_000)


@pytest.mark.anyio
async def test_upload_returns_a_url_that_serves_the_same_bytes(storage: StorageServer, tmp_path: Path) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        client = FalStorageClient(http, token_base=storage.base_url, upload_base=None, fal_key=KEY)
        url = await client.upload(_media(tmp_path))
        assert url.startswith(f"{storage.base_url}/storage/files/")
        served = await http.get(url)
    assert served.status_code == 200
    assert served.content == PNG and served.headers["content-type"] == "image/png"

    (_, token_path, token_headers), (_, upload_path, upload_headers), _ = storage.recorder.seen
    assert token_path == "/storage/auth/token" and token_headers["authorization"] == f"Key {KEY}"
    assert upload_path == "/files/upload"
    assert upload_headers["authorization"].startswith("Bearer ")
    assert upload_headers["content-type"] == "image/png"
    assert upload_headers["x-fal-file-name"] == "my_cat_1.png"
    # The fal key (or either half of it) is never sent to the upload host, in any header or the body.
    for part in (KEY, *KEY.split(":")):
        assert all(part not in value for value in upload_headers.values())


@pytest.mark.anyio
async def test_upload_with_a_wrong_key_is_refused_clearly(storage: StorageServer, tmp_path: Path) -> None:
    wrong = "wrong-key-abcdef:0123456789"
    async with httpx.AsyncClient(trust_env=False) as http:
        client = FalStorageClient(http, token_base=storage.base_url, upload_base=None, fal_key=wrong)
        with pytest.raises(AuthError) as caught:
            await client.upload(_media(tmp_path))
    message = caught.value.message
    assert "HTTP 401" in message and "FAL_KEY" in message
    assert all(part not in message for part in (wrong, *wrong.split(":")))
    assert [path for _, path, _ in storage.recorder.seen] == ["/storage/auth/token"]
    assert storage.files == {}


# ---- upload client rules, with a scripted transport ----------------------------------------------


def _scripted(
    token_answer: dict[str, Any], seen: list[httpx.Request], *, token_status: int = 200
) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/storage/auth/token":
            return httpx.Response(token_status, json=token_answer)
        return httpx.Response(200, json={"access_url": "https://v3.fal.media/files/x/cat.png"})

    return httpx.MockTransport(handle)


@pytest.mark.anyio
@pytest.mark.parametrize("base_url", ["http://uploads.example.com", "ftp://v3.fal.media", "https://u:p@v3.fal.media"])
async def test_an_unsafe_upload_host_from_the_token_answer_is_not_used(tmp_path: Path, base_url: str) -> None:
    seen: list[httpx.Request] = []
    answer = {"token": "tok123", "token_type": "Bearer", "base_url": base_url}
    async with httpx.AsyncClient(transport=_scripted(answer, seen)) as http:
        client = FalStorageClient(http, token_base="https://rest.fal.ai", upload_base=None, fal_key=KEY)
        with pytest.raises(BadResponseError, match="FAL_MCP_STORAGE_UPLOAD_BASE"):
            await client.upload(_media(tmp_path))
    assert [r.url.host for r in seen] == ["rest.fal.ai"]


@pytest.mark.anyio
async def test_the_configured_upload_base_wins_and_gets_only_the_token(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []
    answer = {"token": "tok123", "token_type": "Bearer", "base_url": "https://other.fal.media"}
    async with httpx.AsyncClient(transport=_scripted(answer, seen)) as http:
        client = FalStorageClient(
            http, token_base="https://rest.fal.ai", upload_base="https://v3.fal.media/", fal_key=KEY
        )
        assert await client.upload(_media(tmp_path)) == "https://v3.fal.media/files/x/cat.png"
    token_request, upload_request = seen
    assert str(token_request.url) == "https://rest.fal.ai/storage/auth/token?storage_type=fal-cdn-v3"
    assert token_request.headers["authorization"] == f"Key {KEY}" and json.loads(token_request.content) == {}
    assert str(upload_request.url) == "https://v3.fal.media/files/upload"
    assert upload_request.headers["authorization"] == "Bearer tok123" and upload_request.content == PNG
    assert KEY.split(":")[1] not in str(upload_request.headers.raw)


@pytest.mark.anyio
async def test_redirects_are_not_followed_and_the_key_is_not_echoed(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(307, headers={"location": "https://evil.example.com/steal"})
        return httpx.Response(200, json={})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle), follow_redirects=True) as http:
        client = FalStorageClient(http, token_base="https://rest.fal.ai", upload_base=None, fal_key=KEY)
        with pytest.raises(BadResponseError, match="redirect"):
            await client.upload(_media(tmp_path))
    assert len(seen) == 1

    echo = httpx.MockTransport(lambda r: httpx.Response(400, json={"detail": f"bad key {KEY}"}))
    async with httpx.AsyncClient(transport=echo) as http:
        client = FalStorageClient(http, token_base="https://rest.fal.ai", upload_base=None, fal_key=KEY)
        with pytest.raises(FalError) as caught:
            await client.upload(_media(tmp_path))
    assert all(part not in caught.value.message for part in (KEY, *KEY.split(":")))

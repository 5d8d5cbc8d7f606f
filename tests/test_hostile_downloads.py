"""Hostile media URLs and names: host names that resolve to internal addresses (on the first hop or after a
redirect), names and types that would make a download runnable, results with too many files, and the leftovers
of interrupted downloads.

Host names are resolved by a resolver each test passes in (media.example.test -> 127.0.0.1 "for the test
alone"): no test asks the system resolver about a name, so no traffic leaves 127.0.0.0/8.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from mcp import Client

from server.app import create_server
from server.files import url_safety
from server.files.disk import PART_PREFIX, PART_SUFFIX
from server.files.downloads import STALE_PART_SECONDS, DownloadError, DownloadLimits, download_media
from server.files.names import safe_file_name
from server.sandbox import Fault, Sandbox
from server.sandbox.media import tiny_mp4
from tests.helpers import SEED_MODEL, make_settings, text_of

pytestmark = pytest.mark.anyio

REQUEST_ID = "764cabcf-91d2-4a5e-b2f4-0123456789ab"
MEDIA_NAME = "media.example.test"
PUBLIC_ADDRESS = "93.184.215.14"


class FakeDns:
    """A resolver for one test: names map to the addresses given; every lookup is recorded."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host in self.names:
            return self.names[host]
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None


@pytest.fixture(autouse=True)
def no_real_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should any path fall back to the system resolver, fail instead of sending a DNS query."""

    async def refuse(host: str, port: int) -> list[str]:
        raise AssertionError(f"the system resolver was asked about {host}")

    monkeypatch.setattr(url_safety, "system_resolver", refuse)
    monkeypatch.setattr("server.files.downloads.system_resolver", refuse)


def _limits(*, allow_loopback: bool) -> DownloadLimits:
    return DownloadLimits(max_bytes=1024 * 1024, timeout_seconds=10, allow_loopback=allow_loopback)


async def _download(http: httpx.AsyncClient, url: str, directory: Path, dns: FakeDns, *, allow_loopback: bool):
    return await download_media(
        http,
        url,
        directory=directory,
        request_id=REQUEST_ID,
        suggested_name=None,
        content_type=None,
        limits=_limits(allow_loopback=allow_loopback),
        resolve=dns,
    )


class Recorder:
    """A test transport that records each request and answers with a small MP4."""

    def __init__(self) -> None:
        self.sent: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return httpx.Response(200, content=tiny_mp4(), headers={"Content-Type": "video/mp4"})


# ---- SSRF through host names: the first hop -----------------------------------------------------------------

INTERNAL = [
    (["127.0.0.1"], "loopback"),
    (["169.254.169.254"], "link-local"),
    (["10.0.0.7"], "private"),
    (["192.168.1.1"], "private"),
    (["fd00::1"], "private"),
    (["::ffff:127.0.0.1"], "loopback"),
    (["100.64.0.1"], "non-public"),
    ([PUBLIC_ADDRESS, "10.0.0.7"], "private"),  # one internal address among public ones is enough to refuse
]


@pytest.mark.parametrize(("addresses", "reason"), INTERNAL, ids=[str(a) for a, _ in INTERNAL])
async def test_a_public_looking_name_resolving_inside_is_not_fetched(
    tmp_path: Path, addresses: list[str], reason: str
) -> None:
    recorder, dns = Recorder(), FakeDns({MEDIA_NAME: addresses})
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as http:
        with pytest.raises(DownloadError, match=f"resolves to a {reason}") as caught:
            await _download(http, f"https://{MEDIA_NAME}/files/out.mp4", tmp_path / "out", dns, allow_loopback=False)
    assert recorder.sent == []  # refused before any request
    assert dns.asked == [MEDIA_NAME]
    assert not any(address in str(caught.value) for address in addresses)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


async def test_the_request_goes_to_the_checked_address_with_the_name_kept(tmp_path: Path) -> None:
    """Resolved once; the connection goes to that answer (a second lookup could rebind), Host and TLS name kept."""
    answers = iter([[PUBLIC_ADDRESS], ["127.0.0.1"]])  # a rebinding resolver: public first, loopback after

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    recorder = Recorder()
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as http:
        saved = await download_media(
            http,
            f"https://{MEDIA_NAME}:8443/files/out.mp4",
            directory=tmp_path,
            request_id=REQUEST_ID,
            suggested_name=None,
            content_type=None,
            limits=_limits(allow_loopback=False),
            resolve=rebinding,
        )
    (request,) = recorder.sent
    assert request.url.host == PUBLIC_ADDRESS and request.url.port == 8443
    assert request.headers["host"] == f"{MEDIA_NAME}:8443"
    assert request.extensions["sni_hostname"] == MEDIA_NAME  # the certificate is checked against the name
    assert saved.url == f"https://{MEDIA_NAME}:8443/files/out.mp4" and saved.path.read_bytes() == tiny_mp4()


async def test_an_unresolvable_name_is_reported_without_a_request(tmp_path: Path) -> None:
    recorder = Recorder()
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as http:
        with pytest.raises(DownloadError, match="could not be resolved"):
            await _download(http, "https://nowhere.example.test/a.mp4", tmp_path, FakeDns({}), allow_loopback=False)
    assert recorder.sent == []


async def test_a_name_mapped_to_loopback_reaches_the_real_host_when_loopback_is_allowed(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Over a real connection: the name is resolved by the test's resolver alone, the bytes come from 127.0.0.1
    and the host saw the name in its Host header."""
    port = urlsplit(sandbox.base_url).port
    dns = FakeDns({MEDIA_NAME: ["127.0.0.1"]})
    async with httpx.AsyncClient(trust_env=False) as http:
        url = f"http://{MEDIA_NAME}:{port}/files/k/clip.mp4"
        saved = await _download(http, url, tmp_path, dns, allow_loopback=True)
    assert saved.path.read_bytes() == tiny_mp4()
    (seen,) = [r for r in sandbox.seen("GET") if r.path == "/files/k/clip.mp4"]
    assert seen.host == f"{MEDIA_NAME}:{port}"


# ---- SSRF through host names: redirect hops ------------------------------------------------------------------


@pytest.mark.parametrize("internal", ["169.254.169.254", "10.1.2.3"])
async def test_a_redirect_to_a_name_resolving_inside_is_not_followed(
    sandbox: Sandbox, tmp_path: Path, internal: str
) -> None:
    port = urlsplit(sandbox.base_url).port
    sandbox.inject(
        Fault("GET /files/k/hop.mp4", status=302, body=b"", headers={"Location": "http://metadata.example.test/x"})
    )
    dns = FakeDns({MEDIA_NAME: ["127.0.0.1"], "metadata.example.test": [internal]})
    async with httpx.AsyncClient(trust_env=False) as http:
        with pytest.raises(DownloadError, match="redirected the download to a refused location") as caught:
            await _download(http, f"http://{MEDIA_NAME}:{port}/files/k/hop.mp4", tmp_path, dns, allow_loopback=True)
    assert dns.asked == [MEDIA_NAME, "metadata.example.test"]  # every hop resolved and checked
    assert internal not in str(caught.value) and "metadata.example" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


async def test_a_redirect_to_a_public_name_is_followed_through_its_own_lookup(sandbox: Sandbox, tmp_path: Path) -> None:
    port = urlsplit(sandbox.base_url).port
    sandbox.inject(
        Fault(
            "GET /files/k/hop.mp4",
            status=307,
            body=b"",
            headers={"Location": f"http://cdn.example.test:{port}/files/k/b.mp4"},
        )
    )
    dns = FakeDns({MEDIA_NAME: ["127.0.0.1"], "cdn.example.test": ["127.0.0.1"]})
    async with httpx.AsyncClient(trust_env=False) as http:
        saved = await _download(http, f"http://{MEDIA_NAME}:{port}/files/k/hop.mp4", tmp_path, dns, allow_loopback=True)
    assert saved.path.read_bytes() == tiny_mp4()
    assert dns.asked == [MEDIA_NAME, "cdn.example.test"]
    assert [r.host for r in sandbox.seen("GET") if r.path == "/files/k/b.mp4"] == [f"cdn.example.test:{port}"]


# ---- through the tool ----------------------------------------------------------------------------------------


async def test_get_fal_result_refuses_a_media_name_resolving_inside(sandbox: Sandbox, tmp_path: Path) -> None:
    """The upstream hands out a media URL on a public-looking name that resolves to a private address: nothing
    is fetched, so no internal service's answer comes back as an excerpt."""
    output = {"video": {"url": "https://media.example.test/internal/admin", "content_type": "video/mp4"}}
    sandbox.inject(Fault("GET /fal-ai/kling-video/requests/", status=200, body=json.dumps(output).encode()))
    dns = FakeDns({MEDIA_NAME: ["10.0.0.7"]})
    settings = make_settings(sandbox, download_dir=tmp_path / "downloads")
    async with Client(create_server(settings, resolve=dns)) as client:
        answer = await client.call_tool("get_fal_result", {"request_id": "abc", "model": SEED_MODEL, "download": True})
    assert not answer.is_error, text_of(answer)
    (problem,) = answer.structured_content["download_problems"]
    assert "private-network address" in problem and "10.0.0.7" not in problem
    assert answer.structured_content["downloads"] == [] and dns.asked == [MEDIA_NAME]


# ---- names ---------------------------------------------------------------------------------------------------

RUNNABLE_OR_ACTIVE = [
    ("x.sh", "text/html", "764cabcf-x.bin"),  # before: the type turned x.sh into x.html
    ("x", "text/html", "764cabcf-x.bin"),
    ("page.html", None, "764cabcf-page.bin"),
    ("page.htm", "video/mp4", "764cabcf-page.mp4"),
    ("drawing.svg", "image/svg+xml", "764cabcf-drawing.bin"),  # SVG can carry scripts
    ("run.py", "text/x-python", "764cabcf-run.bin"),
    ("tool.jar", "application/java-archive", "764cabcf-tool.bin"),
    ("app.apk", None, "764cabcf-app.bin"),
    ("setup.dmg", None, "764cabcf-setup.bin"),
    ("setup.pkg", None, "764cabcf-setup.bin"),
    ("disk.iso", None, "764cabcf-disk.bin"),
    ("report.docm", None, "764cabcf-report.bin"),
    ("open.webloc", None, "764cabcf-open.bin"),
    ("open.terminal", None, "764cabcf-open.bin"),
    ("lib.so", None, "764cabcf-lib.bin"),
    ("x.desktop", "application/x-desktop", "764cabcf-x.bin"),
    ("notes", "text/plain", "764cabcf-notes.bin"),
    ("data", "application/json", "764cabcf-data.bin"),
    ("song.MP3", None, "764cabcf-song.mp3"),
    ("photo.jpeg", None, "764cabcf-photo.jpeg"),
    ("clip", "video/quicktime", "764cabcf-clip.mov"),
    ("voice", "audio/ogg", "764cabcf-voice.ogg"),
]


@pytest.mark.parametrize(("suggested", "content_type", "expected"), RUNNABLE_OR_ACTIVE)
def test_only_media_extensions_are_kept(suggested: str, content_type: str | None, expected: str) -> None:
    assert safe_file_name(REQUEST_ID, "https://x.io/a", suggested, content_type) == expected


# ---- how many files one result may download ------------------------------------------------------------------


async def test_one_result_downloads_a_bounded_number_of_files(sandbox: Sandbox, tmp_path: Path) -> None:
    output = {"images": [{"url": f"{sandbox.base_url}/files/many/{n}.mp4"} for n in range(25)]}
    sandbox.inject(Fault("GET /fal-ai/kling-video/requests/", status=200, body=json.dumps(output).encode()))
    settings = make_settings(sandbox, download_dir=tmp_path / "downloads", max_download_files=3)
    async with Client(create_server(settings)) as client:
        answer = await client.call_tool("get_fal_result", {"request_id": "abc", "model": SEED_MODEL, "download": True})
    assert not answer.is_error, text_of(answer)
    assert len(answer.structured_content["downloads"]) == 3
    (problem,) = answer.structured_content["download_problems"]
    assert "22 more" in problem and "FAL_MCP_MAX_DOWNLOAD_FILES" in problem
    assert len([r for r in sandbox.seen("GET") if r.path.startswith("/files/many/")]) == 3
    assert len(list((tmp_path / "downloads").iterdir())) == 3


# ---- leftovers of interrupted downloads ----------------------------------------------------------------------


def _part(directory: Path, name: str, age_seconds: float) -> Path:
    path = directory / f"{PART_PREFIX}{name}{PART_SUFFIX}"
    path.write_bytes(b"half a video")
    then = time.time() - age_seconds
    os.utime(path, (then, then))
    return path


@pytest.fixture
def folder_with_leftovers(tmp_path: Path) -> Iterator[tuple[Path, dict[str, Path]]]:
    directory = tmp_path / "downloads"
    directory.mkdir()
    paths = {
        "stale": _part(directory, "killed", STALE_PART_SECONDS + 600),
        "fresh": _part(directory, "running", 5),  # another download may still be writing it
        "other": directory / "keep-me.part",  # not one of ours
    }
    paths["other"].write_bytes(b"user file")
    os.utime(paths["other"], (0, 0))
    target = tmp_path / "elsewhere.txt"
    target.write_bytes(b"not ours")
    paths["link"] = directory / f"{PART_PREFIX}link{PART_SUFFIX}"
    paths["link"].symlink_to(target)
    os.utime(paths["link"], (0, 0), follow_symlinks=False)
    yield directory, paths


async def test_stale_part_files_of_interrupted_downloads_are_removed(
    folder_with_leftovers: tuple[Path, dict[str, Path]],
) -> None:
    directory, paths = folder_with_leftovers
    recorder = Recorder()
    dns = FakeDns({"v3.fal.media": [PUBLIC_ADDRESS]})
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as http:
        saved = await _download(http, "https://v3.fal.media/files/out.mp4", directory, dns, allow_loopback=False)
    assert not paths["stale"].exists()
    assert paths["fresh"].exists() and paths["other"].exists() and paths["link"].is_symlink()
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [saved.path.name, paths["fresh"].name, paths["other"].name, paths["link"].name]
    )

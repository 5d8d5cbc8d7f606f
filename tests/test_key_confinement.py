"""The key stays with the configured base host, and nothing the assistant or the upstream says moves a request
elsewhere.

An "evil" HTTP server listens on 127.0.0.2 and records everything it receives. Hostile endpoint and request ids
(path traversal, escapes, hosts, userinfo, backslashes, dot look-alikes, absolute URLs, query and fragment marks,
CR/LF, NUL, very long) go through every tool and resource that takes them; upstream answers point elsewhere
(foreign status/response/cancel URLs, UniAPI's queue.fal.run URLs, redirects on every route). The evil server must
receive nothing, and a canary key must appear in no tool result, no resource, no stdout/stderr line of a stdio
server at DEBUG, and no byte of the ledger (its -wal and -shm files included), even when the upstream echoes it.

Two kinds of file traffic may reach another host by design, never with the key: an upload goes where fal
storage's token answer says (with the short-lived token only), and a media download follows the result's URL.
"""

from __future__ import annotations

import json
import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from mcp_types import ResourceTemplateReference

from server.sandbox import Fault, Sandbox, SandboxConfig
from server.sandbox.media import tiny_png
from tests.helpers import SEED_INPUT, SEED_MODEL, clean_env, connect, make_settings, text_of
from tests.stdio_session import StdioSession
from tools.catalog.sandbox_rules import CatalogRules
from tools.mcp_completion import JOB_TEMPLATE

pytestmark = pytest.mark.anyio

KEY = "canary-" + secrets.token_hex(16)
ROOT = Path(__file__).resolve().parents[1]
ID_TOOLS = ("get_fal_status", "get_fal_result", "cancel_fal_job")


# ---- the evil host ----------------------------------------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def mentions(self, text: str) -> bool:
        blob = f"{self.method} {self.path} {self.headers}".encode() + self.body
        return text.encode() in blob


class EvilHost:
    """A plain HTTP server on 127.0.0.2 that records every request and answers plausibly, to lure a client on."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        evil = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                evil.received.append(Received(self.command, self.path, dict(self.headers.items()), body))
                answer = json.dumps(
                    {"status": "COMPLETED", "request_id": str(uuid.uuid4()), "token": "evil", "base_url": evil.url}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
        self.netloc = f"127.0.0.2:{self._server.server_address[1]}"
        self.url = f"http://{self.netloc}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def evil() -> Iterator[EvilHost]:
    host = EvilHost()
    try:
        yield host
    finally:
        host.close()


@pytest.fixture
def upstream() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(queue_seconds=0.1, run_seconds=0.3, key=KEY)) as running:
        yield running


# ---- hostile ids ------------------------------------------------------------------------------------------------


def hostile_ids(evil: str) -> list[str]:
    """Ids that must be refused before any request (`evil` is host:port of the evil server)."""
    return [
        "..",
        "../..",
        "../../etc/passwd",
        "fal-ai/../../admin",
        "fal-ai/kling-video/../../../x",
        "fal-ai/x/..",
        "./x",
        "fal-ai/./x",
        "%2e%2e",
        "%2e%2e/%2e%2e/x",
        "%252e%252e",
        "fal-ai%2F..%2Fx",
        "fal-ai/x%2F..",
        "fal-ai/%00",
        f"//{evil}",
        f"//{evil}/fal-ai/x",
        f"@{evil}",
        f"fal-ai@{evil}/x",
        f"x:y@{evil}/z",
        f"{evil}/x",
        "fal-ai\\..\\..\\x",
        "\\\\127.0.0.2\\share",
        "fal-ai/x\\y",
        "fal-ai/\u2024\u2024/x",  # one dot leaders
        "fal-ai/\uff0e\uff0e/x",  # fullwidth full stops
        "\u3002\u3002/x",  # ideographic full stops
        "fal-ai/x\u2215..",  # a division slash
        "fal\u2010ai/x",  # a unicode hyphen
        "ｆａｌ-ai/x",
        "fal-ai/\u0130x",  # a dotted capital I that lowercases to two characters
        f"http://{evil}/x",
        f"https://{evil}",
        f"HTTP://{evil}/fal-ai/x",
        "file:///etc/passwd",
        f"ws://{evil}/x",
        "javascript:alert(1)",
        "fal-ai/x?y=1",
        "fal-ai/x?",
        "x#y",
        "fal-ai/x#",
        "fal-ai/x%3Fy",
        "fal-ai/x%23y",
        "fal-ai/x\r\nHost: 127.0.0.2",
        "fal-ai/x\nX-Injected: 1",
        "fal-ai/x\x00y",
        "\x00",
        "",
        " ",
        "fal-ai/x y",
        "fal-ai/x\ty",
        "fal-ai//x",
        "/fal-ai/x",
        "fal-ai/x/",
        "FAL-AI/X",
        "a" * 10_000,
        "fal-ai/" + "a/" * 500 + "x",
    ]


# Odd but well formed: these may be sent, and must then stay on the base host, under the base path.
ODD_BUT_VALID = ["127.0.0.2/x", "fal-ai/x.y_z-1", "workflows/a/b", "localhost/x", "abc\r", " fal-ai/x\n"]


def _sent_safely(sandbox: Sandbox) -> list[str]:
    """Problems with what the sandbox received: another Host header, or a path that is not plain segments."""
    host = sandbox.base_url.removeprefix("http://")
    problems = []
    for r in sandbox.seen():
        if r.host != host:
            problems.append(f"Host: {r.host}")
        plain = all(part and part not in (".", "..") for part in r.path.split("/")[1:])
        if not plain or any(c in r.path for c in "%\\?#@:") or not r.path.isascii():
            problems.append(f"path: {r.path!r}")
    return problems


class Collector:
    """Everything the client got back, to search for the key."""

    def __init__(self) -> None:
        self.blobs: list[str] = []

    def tool(self, result: Any) -> Any:
        self.blobs.append(text_of(result))
        self.blobs.append(json.dumps(result.structured_content or {}, ensure_ascii=False))
        self.blobs.append(result.model_dump_json())
        return result

    async def resource(self, client: Any, uri: str) -> None:
        try:
            read = await client.read_resource(uri)
        except Exception as exc:  # an unknown or refused resource is a protocol error: its text counts too
            self.blobs.append(str(exc))
            return
        self.blobs.append(read.model_dump_json())

    def assert_clean(self) -> None:
        leaked = [blob[:300] for blob in self.blobs if KEY in blob]
        assert not leaked, f"the key is in {len(leaked)} answers: {leaked[:3]}"


def _ledger_leaks(state_dir: Path, *, live: bool = False) -> list[str]:
    """Files of the ledger (the database, and its -wal and -shm files while a server has it open) that hold the key."""
    files = [p for p in state_dir.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".sqlite3") for p in files), files
    if live:
        assert any(p.name.endswith("-wal") for p in files), files  # recent writes are in the write-ahead log
    return [str(p) for p in files if KEY.encode() in p.read_bytes()]


def _fal_settings(sandbox: Sandbox, tmp_path: Path, **extra: Any) -> Any:
    return make_settings(
        sandbox,
        fal_key=KEY,
        state_dir=tmp_path / "state",
        file_roots=(tmp_path,),
        storage_token_base=sandbox.base_url,
        download_dir=tmp_path / "downloads",
        request_timeout=1.0,
        retry_deadline=0.5,
        max_wait_seconds=3.0,
        poll_first_interval=0.1,
        **extra,
    )


# ---- the tests --------------------------------------------------------------------------------------------------


async def test_hostile_ids_are_refused_before_any_request(upstream: Sandbox, evil: EvilHost, tmp_path: Path) -> None:
    hostile = hostile_ids(evil.netloc)
    collected = Collector()
    calls = 0
    async with connect(_fal_settings(upstream, tmp_path)) as client:
        submitted = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
        real_id = submitted.structured_content["request_id"]
        for bad in hostile:
            attempts: list[tuple[str, dict[str, Any]]] = [
                ("submit_fal_job", {"model": bad, "input": {"prompt": "x"}}),
                ("describe_fal_model", {"model": bad}),
                ("list_fal_jobs", {"model": bad}),
            ]
            for tool in ID_TOOLS:
                attempts += [
                    (tool, {"request_id": bad}),
                    (tool, {"request_id": bad, "model": SEED_MODEL}),
                    (tool, {"request_id": real_id, "model": bad}),
                ]
            for tool, args in attempts:
                if args.get("model") == "":
                    continue  # an empty model means "not given" (the ledger's), not a hostile one
                before = len(upstream.seen())
                answer = collected.tool(await client.call_tool(tool, args))
                calls += 1
                assert answer.is_error, (tool, args, text_of(answer)[:200])
                assert len(upstream.seen()) == before, f"{tool}({args!r}) sent a request"
            for uri in (f"fal://jobs/{bad}", f"fal://models/{bad}"):
                await collected.resource(client, uri)
        for odd in ODD_BUT_VALID:  # may go upstream, but only as plain paths on the base host
            collected.tool(await client.call_tool("submit_fal_job", {"model": odd, "input": {"prompt": "x"}}))
            for tool in ID_TOOLS:
                collected.tool(await client.call_tool(tool, {"request_id": real_id, "model": odd}))
    print(
        f"\nkey confinement: {len(hostile)} hostile ids, {calls} refused tool calls, {2 * len(hostile)} resource reads"
    )
    assert evil.received == []
    assert _sent_safely(upstream) == []
    collected.assert_clean()
    assert _ledger_leaks(tmp_path / "state") == []


@pytest.mark.parametrize("flavor", ["fal", "uniapi"])
async def test_urls_in_upstream_answers_are_never_fetched(
    upstream: Sandbox, evil: EvilHost, tmp_path: Path, flavor: str
) -> None:
    upstream.config.flavor = flavor  # "uniapi": every answer points at https://queue.fal.run
    settings = (
        _fal_settings(upstream, tmp_path)
        if flavor == "fal"
        else make_settings(
            upstream, provider="uniapi", uniapi_key=KEY, fal_key=None, state_dir=tmp_path / "state", max_wait_seconds=3
        )
    )
    collected = Collector()
    foreign = {
        "status_url": f"{evil.url}/fal-ai/kling-video/requests/x/status",
        "response_url": f"{evil.url}/fal-ai/kling-video/requests/x",
        "cancel_url": f"{evil.url}/fal-ai/kling-video/requests/x/cancel",
        "stream_url": f"{evil.url}/stream",
    }
    async with connect(settings) as client:
        # a real job, followed to the end: every answer carries URLs (queue.fal.run through UniAPI)
        real = collected.tool(await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT}))
        real_id = real.structured_content["request_id"]
        collected.tool(await client.call_tool("get_fal_status", {"request_id": real_id}))
        collected.tool(await client.call_tool("cancel_fal_job", {"request_id": real_id}))
        collected.tool(await client.call_tool("get_fal_result", {"request_id": real_id, "wait_seconds": 3}))

        # answers that point at the evil host on every route
        lured = str(uuid.uuid4())
        upstream.inject(Fault("POST /fal-ai/", status=200, body=json.dumps({"request_id": lured, **foreign}).encode()))
        answer = collected.tool(await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT}))
        assert not answer.is_error and answer.structured_content["request_id"] == lured
        status = {"status": "COMPLETED", "request_id": lured, "logs": [], **foreign}
        upstream.inject(Fault(f"/requests/{lured}/status", status=200, body=json.dumps(status).encode(), times=10))
        collected.tool(await client.call_tool("get_fal_status", {"request_id": lured}))
        output = {"video": {"url": f"{evil.url}/output.mp4", "content_type": "video/mp4"}, **foreign}
        upstream.inject(
            Fault(f"GET /fal-ai/kling-video/requests/{lured}", status=200, body=json.dumps(output).encode())
        )
        # no wait: the answer must not depend on how soon a loaded machine gets to its first status poll
        result = collected.tool(await client.call_tool("get_fal_result", {"request_id": lured}))
        assert not result.is_error, result.content
        assert result.structured_content["done"] is True  # the evil URL is reported as output, not fetched
        upstream.inject(Fault(f"/requests/{lured}/cancel", status=202, body=json.dumps(foreign).encode()))
        collected.tool(await client.call_tool("cancel_fal_job", {"request_id": lured}))
        await collected.resource(client, f"fal://jobs/{lured}")
        await collected.resource(client, "fal://jobs")
    assert evil.received == []
    assert _sent_safely(upstream) == []
    assert {r.host for r in upstream.seen()} == {upstream.base_url.removeprefix("http://")}
    collected.assert_clean()
    assert _ledger_leaks(tmp_path / "state") == []


REDIRECT_ROUTES = {
    "submit": "POST /fal-ai/",
    "status": "/status",
    "stream": "/status/stream",
    "result": "GET /fal-ai/kling-video/requests/",
    "cancel": "/cancel",
    "storage token": "/storage/auth/token",
    "storage upload": "POST /files/upload",
}


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_redirects_to_another_host_are_not_followed(
    upstream: Sandbox, evil: EvilHost, tmp_path: Path, code: int
) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(tiny_png())
    collected = Collector()
    location = {"Location": f"{evil.url}/steal"}
    async with connect(_fal_settings(upstream, tmp_path)) as client:
        submitted = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
        request_id = submitted.structured_content["request_id"]
        for route in REDIRECT_ROUTES.values():
            upstream.inject(Fault(route, status=code, headers=location, body=b"", times=100))
        answers = [
            await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT}),
            await client.call_tool("get_fal_status", {"request_id": request_id}),
            await client.call_tool("get_fal_result", {"request_id": request_id, "wait_seconds": 1}),
            await client.call_tool("get_fal_result", {"request_id": request_id}),
            await client.call_tool("cancel_fal_job", {"request_id": request_id}),
            await client.call_tool("upload_fal_file", {"path": str(photo)}),
        ]
        for answer in answers:
            collected.tool(answer)
            assert answer.is_error, text_of(answer)[:300]
        upstream.faults.clear()
        # the upload route alone redirected: the token was bought, the bytes were not sent elsewhere
        upstream.inject(Fault("POST /files/upload", status=code, headers=location, body=b""))
        collected.tool(await client.call_tool("upload_fal_file", {"path": str(photo)}))
    assert evil.received == []
    assert _sent_safely(upstream) == []
    collected.assert_clean()


async def test_file_traffic_elsewhere_never_carries_the_key(upstream: Sandbox, evil: EvilHost, tmp_path: Path) -> None:
    """Uploads go where fal storage's token answer says, downloads follow media URLs: both without the key."""
    photo = tmp_path / "photo.png"
    photo.write_bytes(tiny_png())
    collected = Collector()
    async with connect(_fal_settings(upstream, tmp_path)) as client:
        token = {"token": "short-lived-token", "token_type": "Bearer", "base_url": evil.url}
        upstream.inject(Fault("/storage/auth/token", status=200, body=json.dumps(token).encode()))
        collected.tool(await client.call_tool("upload_fal_file", {"path": str(photo)}))
        submitted = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
        request_id = submitted.structured_content["request_id"]
        upstream.finish_now(request_id)
        upstream.inject(Fault("GET /files/", status=302, headers={"Location": f"{evil.url}/output.mp4"}))
        collected.tool(
            await client.call_tool("get_fal_result", {"request_id": request_id, "download": True, "wait_seconds": 1})
        )
    assert all(not r.mentions(KEY) for r in evil.received)
    assert {r.path for r in evil.received} <= {"/files/upload", "/output.mp4"}
    for r in evil.received:
        authorization = {k.lower(): v for k, v in r.headers.items()}.get("authorization")
        # the upload carries the short-lived token it was given; the download carries nothing
        assert authorization == ("Bearer short-lived-token" if r.path == "/files/upload" else None)
    collected.assert_clean()
    assert _ledger_leaks(tmp_path / "state") == []


def _echo(status: int, body: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"status": status, "body": json.dumps(body).encode(), **extra}


async def test_an_upstream_echoing_the_key_does_not_spread_it(upstream: Sandbox, tmp_path: Path) -> None:
    """The upstream (or a proxy) quotes the key back in logs, errors and results; a manipulated assistant puts it
    into a prompt. None of it reaches a tool result, a resource or the ledger."""
    photo = tmp_path / "photo.png"
    photo.write_bytes(tiny_png())
    collected = Collector()
    said = f"Authorization: Key {KEY}"
    async with connect(_fal_settings(upstream, tmp_path)) as client:
        prompted = await client.call_tool(
            "submit_fal_job", {"model": SEED_MODEL, "input": {**SEED_INPUT, "prompt": f"print {KEY}"}}
        )
        collected.tool(prompted)
        running = prompted.structured_content["request_id"]
        upstream.config.run_seconds = 30
        echoes = [
            Fault("/status", **_echo(202, {"status": "IN_PROGRESS", "logs": [{"message": said, "timestamp": "1"}]})),
            Fault("/status", **_echo(200, {"status": "COMPLETED", "error": said, "error_type": said})),
            Fault("/status", **_echo(401, {"detail": said})),
            Fault("/status", **_echo(500, {"detail": [{"loc": ["body", said], "msg": said}]})),
            Fault("/status", **_echo(200, {"status": said})),
        ]
        for fault in echoes:
            upstream.inject(fault)
            collected.tool(await client.call_tool("get_fal_status", {"request_id": running, "model": SEED_MODEL}))
        for fault in (
            Fault("POST /fal-ai/", **_echo(422, {"detail": [{"loc": ["body", "prompt"], "msg": said}]})),
            Fault("POST /fal-ai/", **_echo(200, {"request_id": str(uuid.uuid4()), "status": said})),
            Fault("POST /fal-ai/", **_echo(200, {"status": said})),
            Fault("POST /fal-ai/", **_echo(503, {"detail": said})),
        ):
            upstream.inject(fault)
            collected.tool(await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT}))
        for fault in (
            Fault("/cancel", **_echo(500, {"detail": said})),
            Fault("/cancel", **_echo(400, {"status": said})),
        ):
            upstream.inject(fault)
            collected.tool(await client.call_tool("cancel_fal_job", {"request_id": running}))
        for fault in (
            Fault("/storage/auth/token", **_echo(401, {"detail": said})),
            Fault("/files/upload", **_echo(500, {"detail": said})),
        ):
            upstream.inject(fault)
            collected.tool(await client.call_tool("upload_fal_file", {"path": str(photo)}))

        finished = []
        for result_fault in (
            _echo(200, {"video": {"url": "https://cdn.example/out.mp4"}, "seed": said, said: 1}),
            _echo(500, {"detail": said, "error_type": said}, headers={"X-Fal-Error-Type": said}),
            _echo(200, {"status": "FAILURE", "error": said}),
        ):
            answer = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
            request_id = answer.structured_content["request_id"]
            upstream.finish_now(request_id)
            upstream.inject(Fault(f"GET /fal-ai/kling-video/requests/{request_id}", **result_fault))
            collected.tool(await client.call_tool("get_fal_result", {"request_id": request_id}))
            finished.append(request_id)
        # a wait through the status stream, whose events echo the key
        upstream.inject(
            Fault(
                "/status/stream",
                status=200,
                content_type="text/event-stream",
                body=b"data: "
                + json.dumps({"status": "COMPLETED", "logs": [{"message": said}], "error": said}).encode()
                + b"\n\n",
            )
        )
        streamed = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
        collected.tool(
            await client.call_tool(
                "get_fal_result", {"request_id": streamed.structured_content["request_id"], "wait_seconds": 2}
            )
        )
        assert upstream.faults == []  # every echo was really served
        for tool in ("list_fal_jobs", "list_fal_models"):
            collected.tool(await client.call_tool(tool, {}))
        for uri in ("fal://jobs", "fal://models", f"fal://models/{SEED_MODEL}", f"fal://jobs/{running}"):
            await collected.resource(client, uri)
        for request_id in finished:
            await collected.resource(client, f"fal://jobs/{request_id}")
        assert _ledger_leaks(tmp_path / "state", live=True) == []
    prompt_sent = [r for r in upstream.seen("POST") if KEY in r.body.decode(errors="replace")]
    assert len(prompt_sent) == 1  # the prompt went where the key goes anyway: to the base host, as asked
    collected.assert_clean()
    assert _ledger_leaks(tmp_path / "state") == []


@pytest.mark.parametrize("echoed", [KEY, f"job-{KEY}-1"], ids=["the-key", "inside-an-id"])
async def test_a_key_echoed_back_as_the_request_id_is_refused(upstream: Sandbox, tmp_path: Path, echoed: str) -> None:
    """A request id is shaped like a key (letters, digits, '-'), so the id check alone lets an echoed key through:
    it must reach no answer, no ledger row, no job list and no completion."""
    collected = Collector()
    upstream.inject(Fault("POST /fal-ai/", **_echo(200, {"request_id": echoed, "status": "IN_QUEUE"})))
    async with connect(_fal_settings(upstream, tmp_path)) as client:
        submitted = collected.tool(await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT}))
        listed = collected.tool(await client.call_tool("list_fal_jobs", {}))
        await collected.resource(client, "fal://jobs")
        completed = await client.complete(
            ResourceTemplateReference(uri=JOB_TEMPLATE), {"name": "request_id", "value": ""}
        )
        collected.blobs.append(completed.model_dump_json())
        assert _ledger_leaks(tmp_path / "state", live=True) == []
    assert not upstream.faults
    assert submitted.is_error and "contains the API key" in text_of(submitted) and "resubmit" in text_of(submitted)
    assert [job["status"] for job in listed.structured_content["jobs"]] == ["unknown"]  # the submit is on record
    collected.assert_clean()
    assert _ledger_leaks(tmp_path / "state") == []


async def test_an_upload_url_carrying_the_key_is_not_passed_on(upstream: Sandbox, tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(tiny_png())
    collected = Collector()
    async with connect(_fal_settings(upstream, tmp_path)) as client:
        upstream.inject(Fault("/files/upload", **_echo(200, {"access_url": f"https://cdn.example/{KEY}.png"})))
        collected.tool(await client.call_tool("upload_fal_file", {"path": str(photo)}))
    collected.assert_clean()


# ---- a stdio server at DEBUG ------------------------------------------------------------------------------------


UNIAPI_KEY = "canary-uniapi-" + secrets.token_hex(16)
PRICING, UNIAPI_USAGE, FAL_CREDITS = "/v1/models/pricing", "/v1/billing/usage", "/v1/account/billing"


@pytest.mark.parametrize("provider", ["uniapi", "fal"])
async def test_prices_and_balances_carry_each_key_to_its_own_host(
    evil: EvilHost, tmp_path: Path, provider: str
) -> None:
    """The fal key goes to fal's hosts only (the queue, the platform API, storage), UniAPI's key to the base host
    only: prices are asked of fal's platform API (a host of its own here) with the fal key; the balance of UniAPI's
    base host with UniAPI's key, or, fal direct, of the platform API with the fal key. Redirects on those routes are
    not followed, and neither key appears in an answer."""
    through_uniapi = provider == "uniapi"
    base_key = UNIAPI_KEY if through_uniapi else KEY
    rules = CatalogRules()  # the catalog's units: SEED_MODEL by the second
    with Sandbox(SandboxConfig(key=base_key), rules) as base, Sandbox(SandboxConfig(key=KEY), rules) as platform:
        settings = make_settings(
            base,
            provider=provider,
            uniapi_key=UNIAPI_KEY if through_uniapi else None,
            fal_key=KEY,
            platform_url=f"{platform.base_url}/v1",
            state_dir=tmp_path / "state",
            max_wait_seconds=10.0,
        )
        collected = Collector()
        async with connect(settings) as client:
            described = collected.tool(await client.call_tool("describe_fal_model", {"model": SEED_MODEL}))
            assert described.structured_content["price"].startswith("0.05 USD per second (fal pricing API"), described
            submitted = collected.tool(
                await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
            )
            assert submitted.structured_content["cost_estimate"]["usd"] == 0.25, submitted.content
            request_id = submitted.structured_content["request_id"]
            result = collected.tool(
                await client.call_tool("get_fal_result", {"request_id": request_id, "wait_seconds": 10})
            )
            assert result.structured_content["cost"]["kind"] == "billed", result.content
            await collected.resource(client, "fal://spend")
        asked_before = len(platform.seen()) + len(base.seen())
        # the same routes redirecting to another host (a new server: nothing cached in memory, the price too old)
        location = {"Location": f"{evil.url}/steal"}
        for sandbox in (base, platform):
            for route in (PRICING, UNIAPI_USAGE, FAL_CREDITS):
                sandbox.inject(Fault(route, status=302, headers=location, body=b"", times=10))
        async with connect(make_settings(base, **{**settings.model_dump(), "price_cache_seconds": 0})) as client:
            collected.tool(await client.call_tool("describe_fal_model", {"model": SEED_MODEL}))
            await collected.resource(client, "fal://spend")
        assert len(platform.seen()) + len(base.seen()) > asked_before  # the redirecting routes were asked
    assert evil.received == []
    assert {r.path for r in platform.seen()} == {PRICING} | (set() if through_uniapi else {FAL_CREDITS})
    assert {r.authorization for r in platform.seen()} == {f"Key {KEY}"}
    balance_asks = [r for r in base.seen() if r.path == UNIAPI_USAGE]
    assert {r.authorization for r in balance_asks} == ({f"Bearer {UNIAPI_KEY}"} if through_uniapi else set())
    assert not [r.path for r in base.seen() if r.path in (PRICING, FAL_CREDITS)]
    if through_uniapi:  # the fal key never goes to UniAPI's host
        assert not [r.path for r in base.seen() if KEY in f"{r.authorization} {r.query}" or KEY.encode() in r.body]
    collected.assert_clean()
    assert not [blob[:300] for blob in collected.blobs if UNIAPI_KEY in blob]


def test_a_stdio_server_at_debug_never_writes_the_key(upstream: Sandbox, evil: EvilHost, tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(tiny_png())
    state = tmp_path / "state"
    env = clean_env()
    env.update(
        {
            "FAL_KEY": KEY,
            "FAL_MCP_BASE_URL": upstream.base_url,
            "FAL_MCP_STORAGE_TOKEN_BASE": upstream.base_url,
            "FAL_MCP_FILE_ROOTS": str(tmp_path),
            "FAL_MCP_DOWNLOAD_DIR": str(tmp_path / "downloads"),
            "FAL_MCP_STATE_DIR": str(state),
            "FAL_MCP_LOG_LEVEL": "DEBUG",
            "FAL_MCP_RETRY_DEADLINE": "0.5",
            "FAL_MCP_WATCH_FIRST_INTERVAL": "0.2",
        }
    )
    said = f"Authorization: Key {KEY}"
    session = StdioSession(env)
    try:
        session.initialize("canary")
        submitted = session.call("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
        request_id = submitted["result"]["structuredContent"]["request_id"]
        session.call("get_fal_status", {"request_id": request_id})
        session.call("get_fal_result", {"request_id": request_id, "wait_seconds": 5, "download": True})
        session.call("cancel_fal_job", {"request_id": request_id})
        session.call("upload_fal_file", {"path": str(photo)})
        # an upstream echoing the key, for a job still running (so that its status is asked upstream)
        upstream.config.run_seconds = 60
        running = session.call("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
        running_id = running["result"]["structuredContent"]["request_id"]
        upstream.inject(Fault("/status", **_echo(401, {"detail": said})))
        session.call("get_fal_status", {"request_id": running_id})
        upstream.inject(Fault("/status", **_echo(202, {"status": "IN_PROGRESS", "logs": [{"message": said}]})))
        echoed = session.call("get_fal_status", {"request_id": running_id})
        assert echoed["result"]["structuredContent"]["logs"] == ["Authorization: Key [redacted]"]
        upstream.inject(Fault(f"GET /fal-ai/kling-video/requests/{running_id}", **_echo(200, {"out": said})))
        session.call("get_fal_result", {"request_id": running_id})
        upstream.inject(Fault("POST /fal-ai/", **_echo(503, {"detail": said})))
        session.call("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
        upstream.inject(Fault("POST /fal-ai/", status=302, headers={"Location": f"{evil.url}/x"}, body=b""))
        session.call("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
        assert upstream.faults == []  # every echo was really served
        for bad in hostile_ids(evil.netloc)[:20]:
            session.call("get_fal_result", {"request_id": bad, "model": SEED_MODEL})
            session.call("submit_fal_job", {"model": bad, "input": {"prompt": "x"}})
        for uri in ("fal://jobs", f"fal://jobs/{request_id}", "fal://models"):
            session.request("resources/read", {"uri": uri})
        session.call("list_fal_jobs", {})
        assert _ledger_leaks(state, live=True) == []
    finally:
        finished = session.finish()
    out, err = finished.stdout, finished.stderr
    assert "DEBUG" in err  # the debug log really was on
    assert KEY not in out
    assert KEY not in err, [line for line in err.splitlines() if KEY in line][:3]
    assert evil.received == []
    assert _ledger_leaks(state) == []
    assert all(json.loads(line)["jsonrpc"] == "2.0" for line in out.splitlines() if line.strip())


def test_scrubbing_a_body_finds_the_key_however_the_json_spells_it() -> None:
    """`scrub(value, raw)` skips the walk when the key is absent from the raw body: escapes and UTF-16 must not
    hide it."""
    from server.settings import Settings
    from server.upstream.responses import AnswerReader

    reader = AnswerReader(Settings.from_env({}, provider="fal", base_url="https://queue.fal.run", fal_key=KEY))
    escaped = "".join(f"\\u{ord(c):04x}" for c in KEY)
    for raw in (
        json.dumps({"logs": [{"message": f"Key {KEY}"}]}).encode(),
        ('{"logs": [{"message": "Key ' + escaped + '"}]}').encode(),
        json.dumps({"error": f"Key {KEY}"}).encode("utf-16"),
        json.dumps({KEY: 1}).encode(),
    ):
        assert KEY not in json.dumps(reader.scrub(json.loads(raw), raw)), raw
    clean = json.dumps({"status": "IN_PROGRESS", "logs": []}).encode()
    body = json.loads(clean)
    assert reader.scrub(body, clean) is body  # nothing to cut: the answer is used as it is

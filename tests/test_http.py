"""Streamable HTTP: the official client over HTTP, the bearer token, DNS-rebinding checks, refusing to bind
beyond loopback without a token; and the CLI's sandbox settings."""

from __future__ import annotations

import contextlib
import itertools
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from server.app import create_server
from server.cli import main, sandbox_settings, sandbox_state_dir
from server.http_sessions import SessionLimits
from server.http_transport import confine_local_files, http_app
from server.sandbox import Sandbox
from server.settings import Settings
from tests.helpers import SEED_INPUT, SEED_MODEL, initialize_request, make_settings, server_env
from tests.servers import serving_in_thread

TOKEN = "test-bearer-token-5f2c9a"


def _serve(app) -> Iterator[str]:
    """The app's /mcp URL, served until the generator is resumed once more (or closed)."""
    with serving_in_thread(app, seconds=10) as port:
        yield f"http://127.0.0.1:{port}/mcp"


@pytest.fixture
def open_url(settings: Settings) -> Iterator[str]:
    yield from _serve(http_app(create_server(settings), host="127.0.0.1", token=None))


@pytest.fixture
def token_url(settings: Settings) -> Iterator[str]:
    yield from _serve(http_app(create_server(settings), host="127.0.0.1", token=TOKEN))


@pytest.mark.anyio
async def test_tools_over_http(sandbox: Sandbox, open_url: str) -> None:
    async with Client(open_url) as client:
        submitted = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
        assert not submitted.is_error
        request_id = submitted.structured_content["request_id"]
        sandbox.finish_now(request_id)
        result = await client.call_tool("get_fal_result", {"request_id": request_id})
    assert result.structured_content["done"] is True


@pytest.mark.anyio
async def test_bearer_token_is_required_and_accepted(token_url: str) -> None:
    async with httpx.AsyncClient() as plain:
        answer = await plain.post(token_url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        wrong = await plain.post(token_url, json={}, headers={"Authorization": "Bearer nope"})
    assert answer.status_code == 401 and wrong.status_code == 401
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
        Client(streamable_http_client(token_url, http_client=http)) as client,
    ):
        tools = await client.list_tools()
    assert "submit_fal_job" in {tool.name for tool in tools.tools}


def test_foreign_host_header_is_refused(open_url: str) -> None:
    answer = httpx.post(open_url, json={}, headers={"Host": "evil.example:80"})
    assert answer.status_code == 421


def test_non_loopback_bind_without_token_refuses_to_start(
    capsys: pytest.CaptureFixture[str], monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("FAL_MCP_HTTP_TOKEN", raising=False)
    monkeypatch.setenv("FAL_MCP_STATE_DIR", str(tmp_path))  # not the user's own ledger, whatever its version
    assert main(["--transport", "http", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "FAL_MCP_HTTP_TOKEN" in capsys.readouterr().err


def test_beyond_loopback_local_files_are_off_unless_roots_are_set(sandbox: Sandbox, tmp_path: Path) -> None:
    # The default root is the server account's home: shared with every token holder, it would be theirs to browse.
    default = make_settings(sandbox)
    assert default.file_roots == (Path.home(),)
    assert confine_local_files(default, "0.0.0.0").file_roots == ()
    assert confine_local_files(default, "mcp.example.com").file_roots == ()
    assert confine_local_files(default, "127.0.0.1").file_roots == (Path.home(),)
    assert confine_local_files(default, "localhost").file_roots == (Path.home(),)
    chosen = make_settings(sandbox, file_roots=str(tmp_path))
    assert confine_local_files(chosen, "0.0.0.0").file_roots == (tmp_path,)
    chosen_home = Settings.from_env({"FAL_MCP_FILE_ROOTS": "~", "UNIAPI_KEY": "k"})
    assert confine_local_files(chosen_home, "0.0.0.0").file_roots == (Path.home(),)


_CAPTURE_ROOTS = """
import sys
import server.app, server.http_transport
from server.cli import main
create = server.app.create_server
def spy(settings, **kwargs):
    print("roots:", list(map(str, settings.file_roots)), flush=True)
    return create(settings, **kwargs)
async def serve_nothing(*args, **kwargs):
    pass
server.app.create_server = spy
server.http_transport.serve_http = serve_nothing
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(("host", "roots"), [("0.0.0.0", "roots: []"), ("127.0.0.1", f"roots: [{str(Path.home())!r}]")])
def test_the_command_line_turns_local_files_off_beyond_loopback(sandbox: Sandbox, host: str, roots: str) -> None:
    # Nothing is bound: serving itself is replaced, and the settings the server was built with are printed.
    command = [sys.executable, "-c", _CAPTURE_ROOTS, "--transport", "http", "--host", host, "--port", "1"]
    done = subprocess.run(
        command, env=server_env(sandbox, FAL_MCP_HTTP_TOKEN=TOKEN), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert roots in done.stdout.splitlines()
    assert ("local files are off" in done.stderr) == (host == "0.0.0.0")


def test_sandbox_settings_point_everything_at_the_sandbox(sandbox: Sandbox, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("UNIAPI_KEY", "a-real-key-never-used")
    monkeypatch.setenv("FAL_MCP_DATABASE_URL", "postgresql://user:pw@db.invalid/real-ledger")
    state = sandbox_state_dir(tmp_path / "state")
    settings = sandbox_settings(sandbox, state)
    assert settings.base_url == sandbox.base_url == settings.storage_token_base
    assert settings.api_key() == sandbox.config.key and "a-real-key-never-used" not in settings.secrets()
    # the sandbox's own ledger, beside the real one and never it
    assert settings.state_dir == tmp_path / "state" / "sandbox" and settings.database_url is None


def test_make_settings_helper_is_isolated(sandbox: Sandbox) -> None:
    assert make_settings(sandbox).state_dir != make_settings(sandbox).state_dir


# ---- several instances behind a load balancer -----------------------------------------------------------------


class RoundRobin(httpx2.AsyncBaseTransport):
    """Sends each request to the next instance in turn: a load balancer with no sticky sessions."""

    def __init__(self, urls: list[str]) -> None:
        self._ports = itertools.cycle([httpx2.URL(url).port for url in urls])
        self._inner = httpx2.AsyncHTTPTransport()
        self.sent: Counter[int | None] = Counter()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        port = next(self._ports)
        request.url = request.url.copy_with(port=port)
        self.sent[port] += 1
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.fixture
def two_instances(sandbox: Sandbox) -> Iterator[list[str]]:
    """Two servers on one ledger, each behind its own HTTP app, as two instances of a deployment."""
    settings = make_settings(sandbox, progress_interval=0.2)
    first, second = (
        _serve(
            http_app(create_server(settings, legacy_subscriptions=False), host="127.0.0.1", token=None, stateless=True)
        )
        for _ in "ab"
    )
    yield [next(first), next(second)]
    for server in (first, second):
        next(server, None)


@pytest.mark.anyio
async def test_any_instance_serves_any_request_of_one_client(sandbox: Sandbox, two_instances: list[str]) -> None:
    sandbox.config.run_seconds = 1.5
    balancer = RoundRobin(two_instances)
    updates: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append(message)

    async with (
        httpx2.AsyncClient(transport=balancer) as http,
        Client(streamable_http_client(two_instances[0], http_client=http)) as client,
    ):
        submitted = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
        request_id = submitted.structured_content["request_id"]
        listed = await client.call_tool("list_fal_jobs", {})
        waited = await client.call_tool(
            "get_fal_result", {"request_id": request_id, "wait_seconds": 20}, progress_callback=on_progress
        )
    assert [job["request_id"] for job in listed.structured_content["jobs"]] == [request_id]
    assert waited.structured_content["done"] is True
    assert updates  # progress streamed on the call's own response, whichever instance served it
    assert len(balancer.sent) == 2 and min(balancer.sent.values()) >= 2  # both instances served the session


def test_stateless_by_default_and_why(sandbox: Sandbox, settings: Settings) -> None:
    """A stateful app refuses a session it did not start (what a load balancer would cause); stateless does not."""
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "lb", "version": "0"}},
    }
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    for stateless, expected in ((False, 404), (True, 200)):
        apps = [
            http_app(
                create_server(settings, legacy_subscriptions=not stateless),
                host="127.0.0.1",
                token=None,
                stateless=stateless,
            )
            for _ in "ab"
        ]
        first, second = (_serve(app) for app in apps)
        url_a, url_b = next(first), next(second)
        try:
            started = httpx.post(url_a, json=initialize, headers=headers)
            assert started.status_code == 200
            session = {"mcp-protocol-version": "2025-06-18"}
            if "mcp-session-id" in started.headers:  # stateful only
                session["mcp-session-id"] = started.headers["mcp-session-id"]
            answer = httpx.post(url_b, json=listing, headers=headers | session)
            assert answer.status_code == expected, answer.text
        finally:
            for server in (first, second):
                next(server, None)
    assert Settings.from_env({}).http_stateless is True


def test_stateless_get_is_refused_at_once(settings: Settings) -> None:
    """No session, so no stream for server-initiated messages: a GET gets 405 instead of a silent open stream."""
    app = http_app(create_server(settings, legacy_subscriptions=False), host="127.0.0.1", token=None, stateless=True)
    served = _serve(app)
    url = next(served)
    try:
        answer = httpx.get(url, headers={"Accept": "text/event-stream"}, timeout=10)
    finally:
        next(served, None)
    assert answer.status_code == 405 and "POST" in answer.headers["allow"]


# ---- stateful sessions -----------------------------------------------------------------------------------------

_JSON_OR_STREAM = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def test_a_full_session_table_makes_room_by_closing_the_longest_idle_session(settings: Settings) -> None:
    """One client opening sessions in a loop used to fill the table and get everyone else a 503 for half an hour
    (the idle timeout): now the longest idle session makes room, and only busy sessions are kept whatever comes."""
    sessions = SessionLimits(max_sessions=3, idle_timeout=600)
    served = _serve(http_app(create_server(settings), host="127.0.0.1", token=None, sessions=sessions))
    url = next(served)
    try:
        with httpx.Client(headers=_JSON_OR_STREAM, timeout=30) as http:

            def open_session() -> httpx.Response:
                return http.post(url, json=initialize_request("sessions"))

            def in_session(session: str) -> dict[str, str]:
                return {"mcp-session-id": session, "mcp-protocol-version": "2025-06-18"}

            def ping(session: str) -> int:
                ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
                return http.post(url, json=ping, headers=in_session(session)).status_code

            first, second, third = (open_session().headers["mcp-session-id"] for _ in range(3))
            assert ping(first) == 200  # used again: now `second` has been idle longest
            fourth = open_session()
            assert fourth.status_code == 200, fourth.text
            assert ping(second) == 404  # its client opens a new session, as the protocol asks
            alive = [first, third, fourth.headers["mcp-session-id"]]
            assert [ping(session) for session in alive] == [200, 200, 200]
            # A session with a request in flight (here an open GET stream) is never closed to make room.
            with contextlib.ExitStack() as streams:
                for session in alive:
                    stream = streams.enter_context(
                        http.stream("GET", url, headers=in_session(session) | {"Accept": "text/event-stream"})
                    )
                    assert stream.status_code == 200
                refused = open_session()
                assert refused.status_code == 503
            assert [ping(session) for session in alive] == [200, 200, 200]
            assert open_session().status_code == 200  # the streams closed: idle again, so room can be made
    finally:
        next(served, None)


def test_session_limit_defaults_match_the_settings() -> None:
    defaults = Settings.from_env({})
    assert SessionLimits() == SessionLimits(defaults.http_max_sessions, defaults.http_session_idle_timeout)

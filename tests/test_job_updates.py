"""Pushed job updates: a client following fal://jobs/{request_id} hears when the job changes in the ledger, under
2026-07-28 (`subscriptions/listen`) and 2025-11-25 (`resources/subscribe` + `notifications/resources/updated`), in
memory, over a real stdio subprocess and over HTTP; and the capabilities each transport declares."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.subscriptions import ListenNotSupportedError, ResourceUpdated
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_REQUEST, METHOD_NOT_FOUND, ResourceUpdatedNotification

from server.app import create_server
from server.errors import JobFailedError
from server.http_transport import http_app
from server.jobs.keeping import Jobs
from server.jobs.ledger import Ledger
from server.sandbox import Sandbox
from server.upstream.reports import SubmitReceipt
from tests.helpers import SEED_INPUT, SEED_MODEL, make_settings, server_env
from tests.servers import serving_in_thread
from tools.mcp_updates import JOBS_URI, JobUpdates, job_uri

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")]

WHERE_LISTEN = ["memory", "stdio", "http-stateful", "http-stateless"]
WHERE_LEGACY = ["memory", "stdio", "http-stateful"]  # stateless HTTP has no channel to push on


# ---- connecting ----------------------------------------------------------------------------------------------


@contextmanager
def serve_http(app: Any) -> Iterator[str]:
    with serving_in_thread(app) as port:
        yield f"http://127.0.0.1:{port}/mcp"


@asynccontextmanager
async def connect(sandbox: Sandbox, where: str, mode: str, **client: Any) -> AsyncIterator[Client]:
    """A client of a real server with the watcher off (changes come from get_fal_result, in the test's order)."""
    settings = make_settings(sandbox)
    if where == "memory":
        target: Any = create_server(settings)
    elif where == "stdio":
        env = server_env(sandbox, FAL_MCP_WATCH_JOBS="false")
        target = StdioServerParameters(command=sys.executable, args=["-m", "server"], env=env)
    else:
        stateless = where == "http-stateless"
        server = create_server(settings, legacy_subscriptions=not stateless)
        with serve_http(http_app(server, host="127.0.0.1", token=None, stateless=stateless)) as url:
            async with Client(url, mode=mode, **client) as connected:
                yield connected
        return
    async with Client(target, mode=mode, **client) as connected:
        yield connected


async def submit(client: Client) -> str:
    answer = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
    assert not answer.is_error, answer
    request_id: str = answer.structured_content["request_id"]
    return request_id


async def finish(client: Client, sandbox: Sandbox, request_id: str) -> None:
    """Complete the job upstream and fetch its result: the ledger keeps it, which is the change announced."""
    sandbox.finish_now(request_id)
    answer = await client.call_tool("get_fal_result", {"request_id": request_id})
    assert answer.structured_content["done"] is True, answer


class Inbox:
    """A message handler keeping the URIs of notifications/resources/updated (the 2025-11-25 delivery)."""

    def __init__(self) -> None:
        self.uris: list[str] = []
        self._changed = anyio.Event()

    async def __call__(self, message: object) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            self.uris.append(message.params.uri)
            self._changed.set()
            self._changed = anyio.Event()

    async def wait_for(self, uri: str, seconds: float = 20) -> None:
        with anyio.fail_after(seconds):
            while uri not in self.uris:
                await self._changed.wait()


async def next_uri(subscription: Any, seconds: float = 20) -> str:
    with anyio.fail_after(seconds):
        event = await subscription.__anext__()
    assert isinstance(event, ResourceUpdated)
    return event.uri


# ---- what is declared ----------------------------------------------------------------------------------------

LEGACY_CAPABILITIES = {
    "tools": {"listChanged": False},
    "prompts": {"listChanged": False},
    "resources": {"subscribe": True, "listChanged": False},
    "completions": {},
}
# At 2026-07-28 the SDK derives resources.subscribe and every listChanged from serving subscriptions/listen; the
# tool, prompt and resource lists never change while the server runs, so those streams are honored and stay quiet.
MODERN_CAPABILITIES = {
    "tools": {"listChanged": True},
    "prompts": {"listChanged": True},
    "resources": {"subscribe": True, "listChanged": True},
    "completions": {},
}


@pytest.mark.parametrize("where", WHERE_LISTEN)
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_declared_capabilities(sandbox: Sandbox, where: str, mode: str) -> None:
    """Only what works: completions everywhere, resources.subscribe where updates can be pushed, never logging
    (deprecated as of 2026-07-28, SEP-2577). From initialize (2025-11-25) and server/discover (2026-07-28)."""
    async with connect(sandbox, where, mode) as client:
        declared = client.server_capabilities.model_dump(by_alias=True, exclude_none=True)
        version = client.protocol_version
    declared.pop("extensions", None)  # not ours to judge here
    if mode == "auto":
        assert version == "2026-07-28" and declared == MODERN_CAPABILITIES
    else:
        expected = LEGACY_CAPABILITIES
        if where == "http-stateless":
            expected = expected | {"resources": {"subscribe": False, "listChanged": False}}
        assert version == "2025-11-25" and declared == expected
    assert "logging" not in declared


# ---- the hook in the job lifecycle ------------------------------------------------------------------------------


async def test_jobs_tell_their_listeners_of_each_change(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    jobs = Jobs(lambda: Ledger(tmp_path / "jobs.sqlite3"), secrets=[], max_stored_result_bytes=100_000)
    heard: list[str] = []

    def broken(_: str) -> None:
        raise RuntimeError("a broken listener")

    for listener in (broken, heard.append):
        jobs.events.subscribe(listener)
    for request_id in ("job-a", "job-b"):
        async with jobs.submit_record("fal-ai/veo3", {"prompt": "waves"}) as row:
            await row.submitted(SubmitReceipt(request_id, "fal-ai/veo3", "IN_QUEUE", 0))
    await jobs.keep_output("job-a", {"video": {"url": "https://v3.fal.media/a.mp4"}})
    await jobs.keep_output("job-a", {"video": {"url": "https://v3.fal.media/other.mp4"}})  # kept already: no change
    await jobs.keep_failure("job-a", JobFailedError("too late", error_type="failed"))  # a result wins: no change
    await jobs.keep_failure("job-b", JobFailedError("cancelled", error_type="cancelled"))
    await jobs.record_download("job-a", "https://v3.fal.media/a.mp4", "/tmp/a.mp4", "0" * 64, 10)
    await jobs.record_download("job-z", "https://v3.fal.media/z.mp4", "/tmp/z.mp4", "0" * 64, 10)  # no such job
    jobs.close()
    assert heard == ["job-a", "job-b", "job-a", "job-b", "job-a"]
    assert "a job change listener failed" in caplog.text


# ---- 2026-07-28: subscriptions/listen --------------------------------------------------------------------------


@pytest.mark.parametrize("where", WHERE_LISTEN)
async def test_listen_hears_the_followed_job_change(sandbox: Sandbox, where: str) -> None:
    async with connect(sandbox, where, "auto") as client:
        assert client.protocol_version == "2026-07-28"
        followed, other = await submit(client), await submit(client)
        async with client.listen(resource_subscriptions=[job_uri(followed)]) as subscription:
            assert subscription.honored is not None
            assert subscription.honored.resource_subscriptions == [job_uri(followed)]
            await finish(client, sandbox, other)  # changed first, but not followed: never delivered
            await finish(client, sandbox, followed)
            assert await next_uri(subscription) == job_uri(followed)
        document = await client.read_resource(job_uri(followed))
        assert '"status":"completed"' in document.contents[0].text.replace(" ", "")


async def test_listen_hears_submits_in_the_recent_jobs_list(sandbox: Sandbox) -> None:
    async with connect(sandbox, "memory", "2026-07-28") as client:
        async with client.listen(resource_subscriptions=[JOBS_URI]) as subscription:
            request_id = await submit(client)
            assert await next_uri(subscription) == JOBS_URI
        listed = await client.read_resource(JOBS_URI)
        assert request_id in listed.contents[0].text


async def test_the_watcher_pushes_a_result_nobody_asked_for(sandbox: Sandbox) -> None:
    """The real use: the job completes upstream, the watcher keeps the result, the listening client hears it."""
    settings = make_settings(sandbox, watch_jobs=True, watch_first_interval=0.1, watch_max_interval=0.5)
    async with Client(create_server(settings), mode="2026-07-28") as client:
        request_id = await submit(client)
        async with client.listen(resource_subscriptions=[job_uri(request_id)]) as subscription:
            sandbox.finish_now(request_id)
            assert await next_uri(subscription, seconds=30) == job_uri(request_id)
        document = await client.read_resource(job_uri(request_id))
        assert "completed" in document.contents[0].text


async def test_listen_needs_the_2026_protocol(sandbox: Sandbox) -> None:
    async with connect(sandbox, "memory", "legacy") as client:
        with pytest.raises(ListenNotSupportedError):
            async with client.listen(resource_subscriptions=[JOBS_URI]):
                pass


# ---- 2025-11-25: resources/subscribe ---------------------------------------------------------------------------


@pytest.mark.parametrize("where", WHERE_LEGACY)
async def test_subscribe_hears_resources_updated(sandbox: Sandbox, where: str) -> None:
    inbox = Inbox()
    async with connect(sandbox, where, "legacy", message_handler=inbox) as client:
        assert client.protocol_version == "2025-11-25"
        followed, other, dropped = await submit(client), await submit(client), await submit(client)
        # Over HTTP the updates ride the session's GET stream, opened by the client in the background (and an
        # update sent before it is open is lost, per the spec): submit until the list's update arrives.
        await client.subscribe_resource(JOBS_URI)
        with anyio.fail_after(20):
            while JOBS_URI not in inbox.uris:
                await submit(client)
                with anyio.move_on_after(0.5):
                    await inbox.wait_for(JOBS_URI)
        await client.subscribe_resource(job_uri(followed))
        await client.subscribe_resource(job_uri(dropped))
        await client.unsubscribe_resource(job_uri(dropped))
        await finish(client, sandbox, other)  # not followed
        await finish(client, sandbox, dropped)  # followed no more
        await finish(client, sandbox, followed)
        await inbox.wait_for(job_uri(followed))
        # Sent in order of change: anything about the other two would have come first.
        assert job_uri(other) not in inbox.uris and job_uri(dropped) not in inbox.uris


async def test_stateless_http_does_not_offer_subscribe(sandbox: Sandbox) -> None:
    """No session, so nothing could be pushed: resources.subscribe is not declared at 2025-11-25."""
    async with connect(sandbox, "http-stateless", "legacy") as client:
        with pytest.raises(MCPError) as err:
            await client.subscribe_resource(job_uri("any"))
    assert err.value.code == METHOD_NOT_FOUND


async def test_subscriptions_per_client_are_bounded(sandbox: Sandbox) -> None:
    async with Client(create_server(make_settings(sandbox, max_subscriptions=2)), mode="legacy") as client:
        await client.subscribe_resource(job_uri("a"))
        await client.subscribe_resource(job_uri("b"))
        await client.subscribe_resource(job_uri("b"))  # the same again is fine
        with pytest.raises(MCPError) as err:
            await client.subscribe_resource(job_uri("c"))
        assert err.value.code == INVALID_REQUEST and "FAL_MCP_MAX_SUBSCRIPTIONS" in str(err.value)
        await client.unsubscribe_resource(job_uri("a"))
        await client.subscribe_resource(job_uri("c"))


async def test_subscriptions_per_client_are_bounded_in_bytes(sandbox: Sandbox) -> None:
    # Counting alone let one client hold 100 URIs of megabytes each.
    settings = make_settings(sandbox, max_subscription_bytes=1024)
    async with Client(create_server(settings), mode="legacy") as client:
        await client.subscribe_resource(job_uri("a" * 900))
        with pytest.raises(MCPError) as err:
            await client.subscribe_resource(job_uri("b" * 200))
        assert err.value.code == INVALID_REQUEST and "FAL_MCP_MAX_SUBSCRIPTION_BYTES" in str(err.value)
        await client.unsubscribe_resource(job_uri("a" * 900))
        await client.subscribe_resource(job_uri("b" * 200))


@pytest.mark.parametrize(
    ("uris", "setting"),
    [
        ([job_uri("x" * 2000)], "FAL_MCP_MAX_SUBSCRIPTION_BYTES"),  # one URI too long
        ([job_uri(f"{n}" + "x" * 600) for n in range(2)], "FAL_MCP_MAX_SUBSCRIPTION_BYTES"),  # too long together
        ([job_uri(str(n)) for n in range(3)], "FAL_MCP_MAX_SUBSCRIPTIONS"),  # too many
    ],
)
async def test_listen_streams_are_bounded_in_count_and_bytes(sandbox: Sandbox, uris: list[str], setting: str) -> None:
    settings = make_settings(sandbox, max_subscriptions=2, max_subscription_bytes=1024)
    async with Client(create_server(settings), mode="2026-07-28") as client:
        with pytest.raises(MCPError) as err:
            async with client.listen(resource_subscriptions=uris):
                pass
        assert err.value.code == INVALID_REQUEST and setting in str(err.value) and JOBS_URI in str(err.value)
        # within both bounds, a stream opens, and still hears what it follows
        request_id = await submit(client)
        async with client.listen(resource_subscriptions=[JOBS_URI, job_uri(request_id)]) as subscription:
            assert subscription.honored is not None
            assert subscription.honored.resource_subscriptions == [JOBS_URI, job_uri(request_id)]
            await finish(client, sandbox, request_id)
            assert await next_uri(subscription) in (JOBS_URI, job_uri(request_id))


async def test_subscriptions_end_with_the_session_and_the_private_sdk_parts_are_there() -> None:
    """tools/mcp_updates.py reaches two private parts of the SDK (the low-level server, the request's connection):
    if an SDK upgrade moves them, this fails here with a plain message."""
    updates = JobUpdates(max_subscriptions=10, max_subscription_bytes=4096)
    server: MCPServer[Any] = MCPServer("updates-only", subscriptions=updates.bus)

    @server.resource("fal://jobs", name="jobs")
    def jobs() -> str:
        return "[]"

    updates.serve_legacy_subscriptions(server)
    with serve_http(server.streamable_http_app()) as url:
        async with Client(url, mode="legacy") as client:
            assert client.server_capabilities.resources.subscribe is True
            await client.subscribe_resource(JOBS_URI)
            await client.subscribe_resource(job_uri("a"))
            assert updates.legacy_subscriptions() == 2
        with anyio.fail_after(10):  # the client ends its session on exit; its subscriptions go with it
            while updates.legacy_subscriptions():
                await anyio.sleep(0.02)

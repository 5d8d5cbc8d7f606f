"""The MCP Apps face, without a browser: which tools point at the job view, the view resource (MIME type, the CSP
for fal's CDN and for the sandbox, ChatGPT's key), the HTML being one self-contained file, results that stay
complete for hosts without Apps, and the tools/list budget with the new metadata.

(tests/browser/ runs the view itself in Chromium.)
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from mcp import Client
from mcp.client.extension import ClientExtension
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID

from server.app import create_server
from server.cli import sandbox_settings
from server.sandbox import Sandbox
from server.settings import Settings
from tests.helpers import SEED_INPUT, SEED_MODEL, connect, tools_list_wire
from tools.mcp_apps import CONFIG_SLOT, JOB_VIEW_URI, VIEW_FILE, media_origins, render_view, view_config

pytestmark = pytest.mark.anyio
VIEW_TOOLS = {"submit_fal_job", "get_fal_result", "list_fal_jobs"}
FAL_CDN = ["https://fal.media", "https://*.fal.media"]


class AppsHost(ClientExtension):
    """A client that negotiates MCP Apps, as Claude or ChatGPT do."""

    identifier = EXTENSION_ID

    def settings(self) -> dict[str, Any]:
        return {"mimeTypes": [APP_MIME_TYPE]}


async def _view_resource(settings: Settings) -> Any:
    async with connect(settings) as client:
        read = await client.read_resource(JOB_VIEW_URI)
    assert len(read.contents) == 1
    return read.contents[0]


async def test_the_three_job_tools_point_at_the_view(settings: Settings) -> None:
    async with connect(settings) as client:
        tools = (await client.list_tools()).tools
        resources = (await client.list_resources()).resources
        capabilities = client.server_capabilities
    pointing = {tool.name: tool.meta for tool in tools if tool.meta}
    assert pointing == {key: {"ui": {"resourceUri": JOB_VIEW_URI}} for key in VIEW_TOOLS}
    listed = [resource for resource in resources if str(resource.uri) == JOB_VIEW_URI]
    assert len(listed) == 1 and listed[0].mime_type == APP_MIME_TYPE
    assert capabilities.extensions is not None and capabilities.extensions[EXTENSION_ID] == {}  # (tasks beside it)


async def test_the_view_resource_allows_media_from_fals_cdn_only(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {}, provider="fal", base_url="https://queue.fal.run", state_dir=tmp_path, watch_jobs=False
    )
    content = await _view_resource(settings)
    assert content.mime_type == APP_MIME_TYPE
    assert content.meta["ui"]["csp"] == {"resourceDomains": FAL_CDN, "connectDomains": []}
    assert content.meta["ui"]["prefersBorder"] is True
    # ChatGPT reads its own key: the same lists
    assert content.meta["openai/widgetCSP"] == {"resource_domains": FAL_CDN, "connect_domains": []}


async def test_under_sandbox_the_csp_admits_the_origin_its_media_come_from(sandbox: Sandbox, tmp_path: Path) -> None:
    settings = sandbox_settings(sandbox, tmp_path).model_copy(update={"watch_jobs": False})  # what `--sandbox` uses
    async with connect(settings) as client:
        submitted = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
        request_id = submitted.structured_content["request_id"]
        sandbox.finish_now(request_id)
        result = await client.call_tool("get_fal_result", {"request_id": request_id})
        content = (await client.read_resource(JOB_VIEW_URI)).contents[0]
    url = urlsplit(result.structured_content["media"][0]["url"])
    origin = f"{url.scheme}://{url.netloc}"
    assert origin == sandbox.base_url
    assert content.meta["ui"]["csp"]["resourceDomains"] == [*FAL_CDN, origin]
    assert content.meta["openai/widgetCSP"]["resource_domains"] == [*FAL_CDN, origin]


def test_a_loopback_upstream_origin_is_rebuilt_from_its_parts(tmp_path: Path) -> None:
    for base, origin in (("http://[::1]:8000/", "http://[::1]:8000"), ("http://localhost", "http://localhost")):
        settings = Settings.from_env({}, provider="fal", base_url=base, state_dir=tmp_path)
        assert media_origins(settings) == [*FAL_CDN, origin]


class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


async def test_the_view_is_one_self_contained_file_with_the_servers_intervals(settings: Settings) -> None:
    slow = settings.model_copy(update={"poll_first_interval": 1.5, "poll_max_interval": 4.0})
    html = (await _view_resource(slow)).text
    markup = _Markup()
    markup.feed(html)
    # nothing loaded from anywhere: no src or href, no stylesheet link, no URL in the file at all
    assert [tag for tag, attrs in markup.tags if "src" in attrs or "href" in attrs or tag == "link"] == []
    assert not re.search(r"https?://|@import|url\(|import\(", html)
    scripts = [attrs for tag, attrs in markup.tags if tag == "script"]
    assert scripts == [{"id": "fal-view-config", "type": "application/json"}, {}]
    config = re.search(r'<script id="fal-view-config" type="application/json">(.*?)</script>', html)
    assert config is not None and json.loads(config.group(1)) == {"pollFirstSeconds": 1.5, "pollMaxSeconds": 4.0}
    # the packaged file keeps the slot the server fills
    assert CONFIG_SLOT in VIEW_FILE.read_text()
    assert render_view(view_config(slow)) == html


async def test_the_view_calls_only_tools_that_exist_with_arguments_they_take(settings: Settings) -> None:
    async with connect(settings) as client:
        schemas = {tool.name: tool.input_schema for tool in (await client.list_tools()).tools}
    calls = re.findall(r'callTool\("(\w+)", \{([^}]*)\}', VIEW_FILE.read_text())
    assert {name for name, _ in calls} == {"get_fal_status", "get_fal_result", "cancel_fal_job"}
    for name, arguments in calls:
        keys = set(re.findall(r"(\w+):", arguments))
        assert keys <= set(schemas[name]["properties"]), (name, keys)
        assert set(schemas[name].get("required", [])) <= keys, (name, keys)
    # the handshake the hosts wait for
    for method in ("ui/initialize", "ui/notifications/initialized", "ui/resource-teardown", "ui/open-link"):
        assert f'"{method}"' in VIEW_FILE.read_text(), method


async def test_hosts_without_apps_get_the_same_complete_results(sandbox: Sandbox, settings: Settings) -> None:
    async with (
        Client(create_server(settings), extensions=[AppsHost()]) as apps_host,
        Client(create_server(settings)) as plain,
    ):
        submitted = await apps_host.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
        request_id = submitted.structured_content["request_id"]
        sandbox.finish_now(request_id)
        await plain.call_tool("get_fal_result", {"request_id": request_id})  # kept: both now read the ledger
        for name, arguments in (("get_fal_result", {"request_id": request_id}), ("list_fal_jobs", {})):
            seen_by_apps = await apps_host.call_tool(name, arguments)
            seen_plain = await plain.call_tool(name, arguments)
            assert seen_plain.content == seen_by_apps.content
            assert seen_plain.structured_content == seen_by_apps.structured_content
    # the text block says everything the structured answer does; each media file is also a resource link
    for answer in (submitted, seen_plain):
        assert json.loads(answer.content[0].text) == answer.structured_content
    result = await _result_of(settings, request_id)
    links = [block.uri for block in result.content if block.type == "resource_link"]
    assert links == [media["url"] for media in result.structured_content["media"]] and links
    assert result.structured_content["output"]["video"]["file_size"] > 1000  # what the view shows as the size


async def _result_of(settings: Settings, request_id: str) -> Any:
    async with connect(settings) as client:
        return await client.call_tool("get_fal_result", {"request_id": request_id})


async def test_the_view_tools_carry_the_view_in_tools_list(settings: Settings) -> None:
    """Each view tool names the view in `_meta` (the budget for the whole list, metadata included, is checked in
    test_snapshot.py)."""
    async with connect(settings) as client:
        wire = await tools_list_wire(client)
    assert wire.count(f'"_meta":{{"ui":{{"resourceUri":"{JOB_VIEW_URI}"}}}}') == len(VIEW_TOOLS)

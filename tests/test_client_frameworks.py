"""Agent frameworks turn this server's tools into their model's function declarations before any request is made;
a schema their converter cannot read means the server cannot be used there at all. Each converter runs here on the
server's real `tools/list` answer (in memory, offline)."""

from __future__ import annotations

from typing import Any

import pytest
from google.genai import _mcp_utils, types

from server.settings import Settings
from tests.helpers import connect

pytestmark = pytest.mark.anyio


async def test_google_genai_converts_every_tool(settings: Settings) -> None:
    """google-genai's MCP converter (what `generate_content(config={"tools": [session]})` and the Live API run on
    `tools/list`) crashed on `"additionalProperties": true` ("'bool' object has no attribute 'items'")."""
    async with connect(settings) as client:
        listed = await client.list_tools()
    converted = _mcp_utils.mcp_to_gemini_tools(listed.tools)
    declarations = {d.name: d for tool in converted for d in tool.function_declarations or []}
    assert list(declarations) == [tool.name for tool in listed.tools]

    submit = declarations["submit_fal_job"].parameters
    assert submit is not None and submit.properties is not None
    arms = submit.properties["input"].any_of or []
    kling = _arm(arms, "fal-ai/kling-video/v2.1/standard/image-to-video")
    assert kling.required == ["prompt", "image_url"]
    assert kling.properties is not None and kling.properties["duration"].enum == ["5", "10"]
    catch_all = arms[-1]
    assert catch_all.type == types.Type.OBJECT and not catch_all.properties  # any other model: an open object


def _arm(arms: list[types.Schema], description: str) -> Any:
    return next(arm for arm in arms if arm.description == description)

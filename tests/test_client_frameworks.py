"""Agent frameworks turn this server's tools into their model's function declarations before any request is made;
a schema their converter cannot read means the server cannot be used there at all. Each converter runs here on the
server's real `tools/list` answer (in memory, offline)."""

from __future__ import annotations

from typing import Any

import pytest
from google.genai import _mcp_utils, types
from pydantic_ai.profiles.openai import OpenAIJsonSchemaTransformer, openai_model_profile

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


async def test_pydantic_ai_keeps_submit_input_open_for_openai(settings: Settings) -> None:
    """pydantic-ai's OpenAI conversion closes every object that does not say it is open (`input` then reaches the
    model as {}, every parameter dropped); saying it as {} (for google-genai, above) must keep it open."""
    async with connect(settings) as client:
        listed = await client.list_tools()
    assert openai_model_profile("gpt-5").get("json_schema_transformer") is OpenAIJsonSchemaTransformer
    submit = next(tool for tool in listed.tools if tool.name == "submit_fal_job")
    transformer = OpenAIJsonSchemaTransformer(submit.input_schema, strict=None)
    converted = transformer.walk()
    field = converted["properties"]["input"]
    assert field["additionalProperties"] not in (None, False)
    assert field["anyOf"][-1]["additionalProperties"] not in (None, False)  # any other model: still open
    assert transformer.is_strict_compatible is False  # so pydantic-ai sends it without strict mode, open


def _arm(arms: list[types.Schema], description: str) -> Any:
    return next(arm for arm in arms if arm.description == description)

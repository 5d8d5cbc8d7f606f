from __future__ import annotations

import pytest

from tests.helpers import connect
from tools.catalog import CATALOG
from tools.mcp_prompts import DEFAULT_IMAGE_MODEL, DEFAULT_TEXT_MODEL

pytestmark = pytest.mark.anyio


async def test_create_video_prompt(settings) -> None:
    async with connect(settings) as client:
        prompts = await client.list_prompts()
        assert [p.name for p in prompts.prompts] == ["create_video"]
        assert {a.name: a.required for a in prompts.prompts[0].arguments} == {"idea": True, "image_path": False}
        with_image = await client.get_prompt("create_video", {"idea": "a cat blinks", "image_path": "/tmp/cat.png"})
        text_only = await client.get_prompt("create_video", {"idea": "waves at dusk"})
    image_text = with_image.messages[0].content.text
    assert "a cat blinks" in image_text and "/tmp/cat.png" in image_text
    assert "fal-ai/kling-video/v2.1/standard/image-to-video" in image_text
    assert "wait_seconds=50" in image_text and "submit_fal_job" in image_text
    plain = text_only.messages[0].content.text
    assert "text-to-video" in plain and "/tmp/cat.png" not in plain


def test_prompt_defaults_are_catalogued() -> None:
    assert {DEFAULT_IMAGE_MODEL, DEFAULT_TEXT_MODEL} <= set(CATALOG)

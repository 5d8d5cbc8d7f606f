"""The catalog as the assistant meets it: featured schemas in submit, list/describe tools, resources, validation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from server.errors import UpstreamValidationError
from server.sandbox import Sandbox
from server.upstream.client import create_http_client
from server.upstream.routes import Upstream as Routes
from tests.helpers import connect, make_settings, text_of
from tools.catalog import CATALOG
from tools.catalog.examples import example_input
from tools.schema import compact

pytestmark = pytest.mark.anyio

# One locally invalid input per family, with the phrases its error must contain.
BAD_INPUTS: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "fal-ai/kling-video/v2.1/pro/image-to-video",
        {"prompt": "x", "duration": 7},  # 5 would be taken as "5" (tools.catalog.slips); 7 is no choice
        ["image_url is required", "duration", "'5' or '10'", "you sent 7"],
    ),
    (
        "fal-ai/veo3.1/fast/image-to-video",
        {"prompt": "x", "image_url": "u", "duration": "5s"},
        ["duration", "'4s', '6s' or '8s'", 'you sent "5s"'],
    ),
    (
        "fal-ai/minimax/hailuo-02/standard/text-to-video",
        {"prompt": "", "duration": "8"},
        ["prompt", "at least 1 character", "duration", "'6' or '10'"],
    ),
    (
        "fal-ai/luma-dream-machine/ray-2",
        {"prompt": "a cat", "loop": "yes", "resolution": "4k"},
        ["loop", "valid boolean", "resolution", "'540p', '720p' or '1080p'"],
    ),
    (
        "fal-ai/wan/v2.2-a14b/text-to-video",
        {"prompt": "x", "num_frames": 1000},
        ["num_frames", "less than or equal to 161"],
    ),
    ("fal-ai/bytedance/seedance/v1/pro/image-to-video", {"prompt": "x"}, ["image_url is required"]),
    ("fal-ai/pixverse/v5/text-to-video", {"prompt": "x", "style": "watercolor"}, ["style", "'anime'"]),
    ("fal-ai/sora-2/text-to-video", {"prompt": "x", "duration": "5"}, ["duration", "4, 8, 12, 16 or 20"]),
    (
        "fal-ai/flux/dev",
        {"prompt": "x", "num_images": 9, "image_size": {"width": "wide"}},
        ["num_images", "less than or equal to 4", "image_size"],
    ),
]


@pytest.mark.parametrize(("model", "bad", "phrases"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
async def test_invalid_input_is_refused_locally_with_every_field_named(
    sandbox: Sandbox, settings, model: str, bad: dict[str, Any], phrases: list[str]
) -> None:
    async with connect(settings) as client:
        answer = await client.call_tool("submit_fal_job", {"model": model, "input": bad})
    assert answer.is_error
    for phrase in phrases:
        assert phrase in text_of(answer), (phrase, text_of(answer))
    assert sandbox.seen() == []  # nothing sent, nothing paid


@pytest.mark.parametrize("model", sorted(CATALOG))
def test_every_example_input_is_valid(model: str) -> None:
    CATALOG[model].params.model_validate(example_input(CATALOG[model].params))


async def test_examples_are_accepted_by_the_sandbox_and_unknown_fields_pass_through(sandbox: Sandbox, settings) -> None:
    async with connect(settings) as client:
        for model in ("fal-ai/veo3.1/fast/image-to-video", "fal-ai/flux/dev", "fal-ai/sora-2/image-to-video"):
            body = example_input(CATALOG[model].params) | {"brand_new_field": 1}
            answer = await client.call_tool("submit_fal_job", {"model": model, "input": body})
            assert not answer.is_error, text_of(answer)
            assert "brand_new_field" in answer.structured_content["notes"][0]
    assert [json.loads(r.body).get("brand_new_field") for r in sandbox.seen("POST")] == [1, 1, 1]


async def test_sandbox_answers_422_from_the_same_classes(sandbox: Sandbox, settings) -> None:
    async with create_http_client(settings) as http:
        with pytest.raises(UpstreamValidationError, match="duration"):
            await Routes(settings, http).submit(
                "fal-ai/kling-video/v2.1/standard/image-to-video", {"prompt": "x", "image_url": "u", "duration": "7"}
            )


async def test_featured_schemas_ride_in_submit(settings) -> None:
    """(The budget for the whole list, featured schemas included, is checked in test_snapshot.py.)"""
    async with connect(settings) as client:
        listed = await client.list_tools()
    submit = next(tool for tool in listed.tools if tool.name == "submit_fal_job")
    defs = submit.input_schema["$defs"]
    described = {d["description"]: d for d in defs.values() if "description" in d}
    featured = {endpoint for endpoint, entry in CATALOG.items() if entry.featured}
    assert set(described) == featured
    seed = described["fal-ai/kling-video/v2.1/standard/image-to-video"]
    derived = compact(CATALOG["fal-ai/kling-video/v2.1/standard/image-to-video"].params.model_json_schema())
    assert seed["properties"].keys() == derived["properties"].keys()
    assert seed["required"] == derived["required"] == ["prompt", "image_url"]
    assert seed["properties"]["duration"]["enum"] == ["5", "10"]
    arms = submit.input_schema["properties"]["input"]["anyOf"]
    assert arms[-1]["type"] == "object" and len(arms) == len(featured) + 1


async def test_list_and_describe(settings) -> None:
    async with connect(settings) as client:
        everything = (await client.call_tool("list_fal_models", {})).structured_content
        assert everything["count"] == len(CATALOG) and everything["models"][0]["featured"] is True
        kling_i2v = await client.call_tool("list_fal_models", {"family": "kling", "task": "image-to-video"})
        models = kling_i2v.structured_content["models"]
        assert models and all(m["family"] == "kling" and m["task"] == "image-to-video" for m in models)
        veo = (await client.call_tool("list_fal_models", {"query": "veo fast"})).structured_content["models"]
        assert {m["model"] for m in veo} == {m for m in CATALOG if "veo" in m and "fast" in m}
        none = (await client.call_tool("list_fal_models", {"family": "nope"})).structured_content
        assert none["count"] == 0 and "kling" in none["next"]

        described = await client.call_tool("describe_fal_model", {"model": "kling-video/v2.1/standard/image-to-video"})
        body = described.structured_content
        assert body["model"] == "fal-ai/kling-video/v2.1/standard/image-to-video"
        assert body["input_schema"]["properties"]["cfg_scale"]["maximum"] == 1
        assert set(body["example_input"]) == {"prompt", "image_url"}
        assert "video" in body["output_schema"]["properties"]
        unknown = await client.call_tool("describe_fal_model", {"model": "fal-ai/not-there"})
        assert unknown.is_error and "not in this server's catalog" in text_of(unknown)


async def test_catalog_resources(settings) -> None:
    async with connect(settings) as client:
        listing = json.loads((await client.read_resource("fal://models")).contents[0].text)
        assert listing["count"] == len(CATALOG)
        one = json.loads((await client.read_resource("fal://models/fal-ai/flux/dev")).contents[0].text)
        assert one["model"] == "fal-ai/flux/dev" and "image_size" in one["input_schema"]["properties"]
        templates = await client.list_resource_templates()
        assert "fal://models/{+endpoint_id}" in [t.uri_template for t in templates.resource_templates]


def test_make_settings_is_loopback(sandbox: Sandbox) -> None:
    assert make_settings(sandbox).base_url.startswith("http://127.0.0.1:")


def test_featured_inputs_file_matches_the_catalog() -> None:
    from tools.catalog.featured import render
    from tools.mcp_tools import FEATURED_INPUTS

    assert FEATURED_INPUTS.read_text() == render(), "run `python -m tools.catalog.featured` and review the diff"

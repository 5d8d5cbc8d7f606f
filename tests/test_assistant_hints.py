"""Where an assistant looks: the schemas say that file fields take local paths and what wait_seconds really does, a
refused submit names every problem in one answer (schema and local files together), and an obvious type slip
(5 for "5") is corrected with a note instead of costing a round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from server.sandbox import Sandbox
from server.sandbox.media import tiny_png
from tests.helpers import SEED_INPUT, SEED_MODEL, connect, make_settings, text_of
from tools.catalog.validation import review_input

pytestmark = pytest.mark.anyio
KLING_PRO = "fal-ai/kling-video/v2.1/pro/image-to-video"  # image_url and tail_image_url
VEO_REFERENCE = "fal-ai/veo3.1/reference-to-video"  # image_urls, a list
SORA = "fal-ai/sora-2/text-to-video"  # duration: an integer enum


async def _tool(client: Any, name: str) -> Any:
    listed = await client.list_tools()
    return next(tool for tool in listed.tools if tool.name == name)


# ---- file fields take local paths ------------------------------------------------------------------------------


async def test_submit_schema_says_file_fields_take_a_local_path(settings) -> None:
    async with connect(settings) as client:
        submit = await _tool(client, "submit_fal_job")
    said = submit.input_schema["properties"]["input"]["description"]
    assert "image_url" in said and "local file" in said, said


@pytest.mark.parametrize(
    ("model", "fields"), [(KLING_PRO, ["image_url", "tail_image_url"]), (VEO_REFERENCE, ["image_urls"])]
)
async def test_describe_says_each_file_field_takes_a_local_path(settings, model: str, fields: list[str]) -> None:
    async with connect(settings) as client:
        answer = await client.call_tool("describe_fal_model", {"model": model})
    properties = answer.structured_content["input_schema"]["properties"]
    for name in fields:
        assert "local file" in properties[name].get("description", ""), (name, properties[name])
    assert "local file" not in properties["prompt"].get("description", "")


# ---- every problem in one refusal ------------------------------------------------------------------------------


async def test_a_refused_submit_names_schema_and_file_problems_together(sandbox: Sandbox, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "cat.png").write_bytes(tiny_png())  # a good file: not uploaded while anything else is wrong
    (root / "notes.png").write_text("not an image\n")
    settings = make_settings(sandbox, file_roots=(root,), storage_token_base=sandbox.base_url)
    body = {"duration": "7", "image_url": str(root / "missing.png"), "tail_image_url": str(root / "notes.png")}
    async with connect(settings) as client:
        answer = await client.call_tool("submit_fal_job", {"model": KLING_PRO, "input": body})
        files_only = await client.call_tool(
            "submit_fal_job",
            {
                "model": VEO_REFERENCE,
                "input": {"prompt": "x", "image_urls": [str(root / "cat.png"), "/etc/passwd", str(root / "no.png")]},
            },
        )
    assert answer.is_error
    text = text_of(answer)
    for phrase in ("prompt is required", "duration", "'5' or '10'", "image_url: No file exists", "tail_image_url:"):
        assert phrase in text, (phrase, text)
    assert files_only.is_error
    assert "image_urls[1]:" in text_of(files_only) and "image_urls[2]:" in text_of(files_only), text_of(files_only)
    assert "image_urls[0]" not in text_of(files_only)
    assert sandbox.seen() == []  # nothing submitted, nothing uploaded


# ---- wait_seconds ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cap", [50.0, 20.0])
async def test_wait_seconds_says_its_default_and_this_servers_cap(sandbox: Sandbox, cap: float) -> None:
    async with connect(make_settings(sandbox, max_wait_seconds=cap)) as client:
        result = await _tool(client, "get_fal_result")
    wait = result.input_schema["properties"]["wait_seconds"]
    assert wait["default"] == 0
    assert "default 0" in wait["description"] and f"capped at {cap:g}" in wait["description"], wait


# ---- obvious type slips ----------------------------------------------------------------------------------------


async def test_a_number_for_a_string_choice_is_sent_as_the_string_with_a_note(sandbox: Sandbox, settings) -> None:
    async with connect(settings) as client:
        answer = await client.call_tool(
            "submit_fal_job", {"model": SEED_MODEL, "input": {**SEED_INPUT, "duration": 10}}
        )
    assert not answer.is_error, text_of(answer)
    notes = answer.structured_content["notes"]
    assert any(note.startswith('duration: you sent 10; sent as "10"') for note in notes), notes
    sent = next(r for r in sandbox.seen("POST") if r.path == "/" + SEED_MODEL).json()
    assert sent["duration"] == "10"  # the sandbox checks as strictly as fal: 10 would have been refused


SLIPS: list[tuple[str, dict[str, Any], str, Any]] = [
    (SEED_MODEL, {"duration": 5}, "duration", "5"),
    (SEED_MODEL, {"cfg_scale": "0.7"}, "cfg_scale", 0.7),
    (SORA, {"duration": "8"}, "duration", 8),
    ("fal-ai/flux/dev", {"num_images": "2"}, "num_images", 2),
]


@pytest.mark.parametrize(("model", "slip", "field", "meant"), SLIPS)
def test_unambiguous_slips_are_corrected(model: str, slip: dict[str, Any], field: str, meant: Any) -> None:
    body = {"prompt": "a fox", "image_url": "https://example.com/a.png"} | slip
    checked = review_input(model, body)
    assert checked.problems == [] and checked.body[field] == meant
    assert [note for note in checked.notes if note.startswith(f"{field}: you sent")], checked.notes
    assert body[field] == slip[field]  # the caller's input is left as it was


AMBIGUOUS: list[tuple[str, dict[str, Any], str]] = [
    (SEED_MODEL, {"duration": 5.0}, "duration"),  # 5.0 is not the text "5"
    (SEED_MODEL, {"duration": 7}, "duration"),  # not a choice
    (SEED_MODEL, {"duration": True}, "duration"),
    (SEED_MODEL, {"cfg_scale": "high"}, "cfg_scale"),
    (SORA, {"duration": "5"}, "duration"),  # a number, but not one of 4, 8, 12, 16, 20
    (SORA, {"duration": "8.0"}, "duration"),
    ("fal-ai/flux/dev", {"image_size": 5}, "image_size"),  # a preset or an object: which one is meant?
    ("fal-ai/flux/dev", {"num_images": "2e0"}, "num_images"),
]


@pytest.mark.parametrize(("model", "slip", "field"), AMBIGUOUS)
def test_anything_ambiguous_stays_an_error(model: str, slip: dict[str, Any], field: str) -> None:
    body = {"prompt": "a fox", "image_url": "https://example.com/a.png"} | slip
    checked = review_input(model, body)
    assert checked.body[field] == slip[field]
    assert any(problem.startswith(field) for problem in checked.problems), checked.problems
    assert not [note for note in checked.notes if "you sent" in note]

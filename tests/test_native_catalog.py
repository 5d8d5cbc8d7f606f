"""UniAPI's native Kling and Luma routes in the catalog: their ids and route family, the rules their parameter
models enforce before anything is sent, the tools that describe them, and local files in their file fields.

(Field by field, the models are checked against tests/data/uniapi-native-models.json in test_catalog_facts.py.)
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from server.route_family import route_family_of
from server.sandbox import Sandbox
from server.sandbox.media import tiny_png
from server.upstream.ids import normalize_endpoint_id
from tests.helpers import connect, text_of
from tests.media_samples import GIF_1X1
from tools.catalog import CATALOG
from tools.catalog.examples import example_input
from tools.catalog.sandbox_rules import CatalogRules
from tools.catalog.validation import InputInvalidError, check_input
from tools.uploads import publish_local_files, read_local_files

pytestmark = pytest.mark.anyio

KLING_T2V = "kling/v1/videos/text2video"
KLING_I2V = "kling/v1/videos/image2video"
KLING_IMAGES = "kling/v1/images/generations"
KLING_TRY_ON = "kling/v1/images/kolors-virtual-try-on"
LUMA = "luma/generations"
LUMA_EXTEND = "luma/generations/extend"
NATIVE = {KLING_T2V: "kling", KLING_I2V: "kling", KLING_IMAGES: "kling", KLING_TRY_ON: "kling", LUMA: "luma"}
NATIVE[LUMA_EXTEND] = "luma"
UUID = "764cabcf-b745-4b3e-ae38-1200304cf45b"


# --- ids and route families ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "family"),
    [
        *NATIVE.items(),
        ("fal-ai/kling-video/v2.1/standard/image-to-video", "fal"),
        ("kling-video/v2.1/standard/image-to-video", "fal"),  # UniAPI's short spelling of a fal id
        ("fal-ai/luma-dream-machine/ray-2", "fal"),
        ("luma-dream-machine/ray-2", "fal"),
        ("workflows/me/flow", "fal"),
    ],
)
def test_the_route_family_comes_from_the_id(model: str, family: str) -> None:
    assert route_family_of(model) == family
    assert route_family_of(normalize_endpoint_id(model)) == family


@pytest.mark.parametrize("model", sorted(NATIVE))
def test_native_ids_are_kept_as_their_path(model: str) -> None:
    assert normalize_endpoint_id(model) == model
    assert normalize_endpoint_id(f"  {model} ") == model
    entry = CATALOG[model]
    assert entry.route_family == NATIVE[model]


def test_fal_entries_are_on_the_fal_route() -> None:
    assert {entry.route_family for model, entry in CATALOG.items() if model not in NATIVE} == {"fal"}
    assert {model for model, entry in CATALOG.items() if entry.route_family != "fal"} == set(NATIVE)


# --- refused before anything is sent ---------------------------------------------------------------------------

# One input per rule, with the phrases its error must contain.
BAD_INPUTS: list[tuple[str, dict[str, Any], list[str]]] = [
    (KLING_T2V, {"prompt": "x", "model_name": "kling-v2.1"}, ["model_name", "kling-v2-1-master", 'sent "kling-v2.1"']),
    (KLING_T2V, {"prompt": "x", "model_name": "fal-ai/kling-video"}, ["model_name", "newer name of that form"]),
    # duration is text: 5 is read as "5" (an obvious slip, see below), but 5.0 or a number that breaks a rule is refused
    (KLING_T2V, {"prompt": "x", "duration": 5.0}, ["duration", "'5'", "'10'", "you sent 5.0"]),
    (KLING_I2V, {"image": "u", "image_tail": "v", "duration": 10}, ['with image_tail only duration "5"']),
    (KLING_T2V, {"prompt": "x", "duration": "7"}, ['duration "7" needs kling-v3', 'takes "5" or "10"']),
    (KLING_T2V, {"prompt": "x", "cfg_scale": 2}, ["cfg_scale", "less than or equal to 1"]),
    (KLING_T2V, {"duration": "5"}, ["prompt is required"]),
    (KLING_T2V, {"prompt": "x", "camera_control": {"type": "simple"}}, ["exactly one non-zero move"]),
    (
        KLING_T2V,
        {"prompt": "x", "camera_control": {"type": "simple", "config": {"zoom": 11}}},
        ["camera_control.config.zoom", "less than or equal to 10"],
    ),
    (KLING_I2V, {"prompt": "x"}, ["give image (the start frame), image_tail (the end frame), or both"]),
    (
        KLING_I2V,
        {"image": "u", "image_tail": "v", "camera_control": {"type": "down_back"}},
        ["image_tail and camera_control exclude each other"],
    ),
    (KLING_I2V, {"image": "u", "static_mask": "m", "image_tail": "v"}, ["image_tail and static_mask/dynamic_masks"]),
    (KLING_I2V, {"image": "u", "image_tail": "v", "duration": "10"}, ['with image_tail only duration "5"']),
    (KLING_IMAGES, {"prompt": "x", "n": 10, "resolution": "4k"}, ["n:", "less than or equal to 9", "resolution"]),
    (KLING_IMAGES, {"prompt": "x", "model_name": "kling-v1-5", "image": "u"}, ["needs image_reference"]),
    (KLING_TRY_ON, {"human_image": "u"}, ["cloth_image is required"]),
    (LUMA, {"prompt": "a fox"}, ["user_prompt is required"]),
    (LUMA, {"user_prompt": "a fox", "duration": 5, "loop": "yes"}, ["duration", "valid string", "loop", "boolean"]),
    (LUMA, {"user_prompt": "a fox", "model_name": "ray2"}, ["model_name", "ray-v1, ray-v2"]),
    (LUMA_EXTEND, {"user_prompt": "on", "source_request_id": "../x"}, ["source_request_id", "request id of the"]),
    (LUMA_EXTEND, {"user_prompt": "on"}, ["source_request_id is required"]),
]


@pytest.mark.parametrize(("model", "bad", "phrases"), BAD_INPUTS, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD_INPUTS)])
def test_a_wrong_input_is_refused_with_a_clear_error(model: str, bad: dict[str, Any], phrases: list[str]) -> None:
    with pytest.raises(InputInvalidError) as refused:
        check_input(model, bad)
    message = str(refused.value)
    assert "nothing was submitted" in message
    for phrase in phrases:
        assert phrase in message, (phrase, message)


async def test_through_submit_nothing_is_sent(sandbox: Sandbox) -> None:
    from tests.helpers import make_settings

    # native routes exist only through UniAPI (with a fal key alone they are refused before the input is read)
    settings = make_settings(sandbox, provider="uniapi", uniapi_key=sandbox.config.key, fal_key=None)
    async with connect(settings) as client:
        for model, bad, phrases in BAD_INPUTS:
            answer = await client.call_tool("submit_fal_job", {"model": model, "input": bad})
            assert answer.is_error and phrases[0] in text_of(answer), (model, text_of(answer))
    assert sandbox.seen() == []  # nothing sent, nothing paid


@pytest.mark.parametrize(
    ("model", "good"),
    [
        (KLING_T2V, {"prompt": "x", "model_name": "kling-v3", "duration": "12", "sound": "on"}),
        (KLING_T2V, {"prompt": "x", "camera_control": {"type": "simple", "config": {"pan": -3, "zoom": 0}}}),
        (KLING_I2V, {"image_tail": "v"}),
        (KLING_I2V, {"image": "u", "camera_control": {"type": "forward_up"}, "duration": "10"}),
        (KLING_I2V, {"image": "u", "dynamic_masks": [{"mask": "m", "trajectories": [{"x": 1, "y": 2}]}]}),
        (KLING_IMAGES, {"prompt": "x", "model_name": "kling-v1-5", "image": "u", "image_reference": "face"}),
        (LUMA, {"user_prompt": "a fox", "model_name": "ray-v2", "duration": "5s", "resolution": "1080p"}),
        (LUMA_EXTEND, {"user_prompt": "on", "source_request_id": UUID}),
        (LUMA_EXTEND, {"user_prompt": "on", "source_request_id": "831923498712349871"}),
    ],
)
def test_a_good_input_passes_unchanged_without_notes(model: str, good: dict[str, Any]) -> None:
    checked = check_input(model, good)
    assert checked.body == good and checked.notes == []


def test_a_number_for_kling_duration_is_sent_as_text_with_a_note() -> None:
    checked = check_input(KLING_T2V, {"prompt": "x", "duration": 10})
    assert checked.body["duration"] == "10"
    assert checked.notes == ['duration: you sent 10; sent as "10", as this field takes text.']


@pytest.mark.parametrize(
    ("model", "field", "newer", "extra"),
    [
        (KLING_T2V, "model_name", "kling-v4-turbo", {"prompt": "x", "duration": "12"}),
        (KLING_TRY_ON, "model_name", "kolors-virtual-try-on-v2", {"human_image": "u", "cloth_image": "v"}),
        (LUMA, "duration", "5", {"user_prompt": "x"}),  # one relay writes "5" for "5s"
        (LUMA, "resolution", "4k", {"user_prompt": "x"}),
    ],
)
def test_a_newer_name_is_sent_as_it_is_with_a_note(model: str, field: str, newer: str, extra: dict[str, Any]) -> None:
    checked = check_input(model, {**extra, field: newer})
    assert checked.body[field] == newer
    assert any(f"{field} {newer!r} is not one this server knows" in note for note in checked.notes), checked.notes


def test_the_sandbox_rules_know_the_native_models() -> None:
    rules = CatalogRules()
    assert rules.media_kind(KLING_TRY_ON) == rules.media_kind(KLING_IMAGES) == "image"
    assert rules.media_kind(KLING_I2V) == rules.media_kind(LUMA_EXTEND) == "video"
    assert rules.problems(KLING_I2V, {"prompt": "x"})
    assert rules.problems(KLING_I2V, example_input(CATALOG[KLING_I2V].params)) is None
    assert rules.output(KLING_T2V, "http://127.0.0.1/a.mp4", "video/mp4") == {
        "videos": [{"url": "http://127.0.0.1/a.mp4"}]
    }


# --- list, describe and complete -------------------------------------------------------------------------------


async def test_list_and_describe_the_native_models(settings) -> None:
    async with connect(settings) as client:
        luma = (await client.call_tool("list_fal_models", {"family": "luma"})).structured_content
        assert {m["model"] for m in luma["models"]} == {LUMA, LUMA_EXTEND}
        on_fal = (await client.call_tool("list_fal_models", {"family": "fal"})).structured_content
        assert on_fal["count"] == len(CATALOG) - len(NATIVE)
        kling = (await client.call_tool("list_fal_models", {"family": "kling"})).structured_content["models"]
        assert {KLING_T2V, KLING_TRY_ON, "fal-ai/kling-video/v2.1/standard/image-to-video"} <= {
            m["model"] for m in kling
        }
        try_on = (await client.call_tool("list_fal_models", {"task": "virtual-try-on"})).structured_content["models"]
        assert [(m["model"], m["required"]) for m in try_on] == [(KLING_TRY_ON, ["human_image", "cloth_image"])]

        for model in sorted(NATIVE):
            answer = await client.call_tool("describe_fal_model", {"model": model})
            assert not answer.is_error, text_of(answer)
            described = answer.structured_content
            assert described["model"] == model
            CATALOG[model].params.model_validate(described["example_input"])
        i2v = (await client.call_tool("describe_fal_model", {"model": KLING_I2V})).structured_content
        model_name = i2v["input_schema"]["properties"]["model_name"]
        assert "kling-v2-6" in model_name["examples"] and model_name["default"] == "kling-v1"
        assert "raw base64" in i2v["next"] and "image" in i2v["example_input"]
        one = await client.read_resource(f"fal://models/{LUMA_EXTEND}")
        assert '"source_request_id"' in one.contents[0].text


async def test_model_ids_complete_with_the_native_routes(settings) -> None:
    from mcp import Client
    from mcp_types import ResourceTemplateReference

    from server.app import create_server
    from tools.mcp_completion import MODEL_TEMPLATE

    ref = ResourceTemplateReference(uri=MODEL_TEMPLATE)
    async with Client(create_server(settings)) as client:
        kling = await client.complete(ref, {"name": "endpoint_id", "value": "kling/v1/"})
        assert sorted(kling.completion.values) == sorted(m for m in NATIVE if m.startswith("kling/"))
        luma = await client.complete(ref, {"name": "endpoint_id", "value": "luma/"})
        assert luma.completion.values == [LUMA, LUMA_EXTEND]


# --- local files in the file fields ----------------------------------------------------------------------------


def _runtime(root: Path, *, storage: Any = None) -> Any:
    """What the file conversion reads of the runtime: the roots, the size cap and fal storage (None: no fal key)."""
    settings = SimpleNamespace(file_roots=(root,), max_upload_bytes=1_000_000)
    return SimpleNamespace(settings=settings, storage=lambda: storage)


async def convert_local_fields(rt: Any, entry: Any, body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """What submit does with an input's local files once the input is good: read them all, then publish."""
    files, problems = await read_local_files(rt, entry, body)
    assert problems == []
    return await publish_local_files(rt, entry, body, files)


async def test_kling_takes_a_local_file_as_raw_base64(tmp_path: Path) -> None:
    photo = tmp_path / "me.png"
    photo.write_bytes(tiny_png())
    raw = base64.b64encode(photo.read_bytes()).decode()
    body = {"human_image": str(photo), "cloth_image": photo.as_uri(), "callback_url": str(photo)}
    sent, notes = await convert_local_fields(_runtime(tmp_path), CATALOG[KLING_TRY_ON], body)
    assert sent["human_image"] == sent["cloth_image"] == raw  # no data: prefix
    assert sent["callback_url"] == str(photo)  # not a file field: left alone, never read
    assert len(notes) == 2 and all("raw base64" in note for note in notes)

    i2v, _ = await convert_local_fields(_runtime(tmp_path), CATALOG[KLING_I2V], {"image": str(photo)})
    assert i2v["image"] == raw


async def test_kling_loses_the_data_prefix_of_a_data_uri(tmp_path: Path) -> None:
    body = {"image": "data:image/png;base64,iVBORw0KGgo=", "image_tail": "https://example.com/end.jpg"}
    sent, notes = await convert_local_fields(_runtime(tmp_path), CATALOG[KLING_I2V], body)
    assert sent == {"image": "iVBORw0KGgo=", "image_tail": "https://example.com/end.jpg"}
    assert notes == ["image: the data: prefix was removed, as this model takes raw base64."]


async def test_luma_takes_a_local_file_as_a_data_uri(tmp_path: Path) -> None:
    photo = tmp_path / "first.png"
    photo.write_bytes(tiny_png())
    sent, _ = await convert_local_fields(
        _runtime(tmp_path), CATALOG[LUMA], {"user_prompt": "x", "image_end_url": str(photo)}
    )
    assert sent["image_end_url"].startswith("data:image/png;base64,")


async def test_with_fal_storage_kling_gets_a_url(tmp_path: Path) -> None:
    photo = tmp_path / "me.png"
    photo.write_bytes(tiny_png())

    class Storage:
        async def upload(self, media: Any) -> str:
            return f"https://storage.example/{media.path.name}"

    sent, _ = await convert_local_fields(
        _runtime(tmp_path, storage=Storage()), CATALOG[KLING_I2V], {"image": str(photo)}
    )
    assert sent["image"] == "https://storage.example/me.png"


async def test_kling_refuses_a_file_type_it_cannot_take(tmp_path: Path) -> None:
    gif = tmp_path / "anim.gif"
    gif.write_bytes(GIF_1X1)
    files, problems = await read_local_files(_runtime(tmp_path), CATALOG[KLING_I2V], {"image": str(gif)})
    assert files == []
    wanted = "image: anim.gif is image/gif, but this model takes only image/jpeg or image/png; convert the file"
    assert problems == [wanted + " and try again"]
    # fal models take any media in their file fields, as before
    sent, _ = await convert_local_fields(_runtime(tmp_path), CATALOG[LUMA], {"user_prompt": "x", "image_url": str(gif)})
    assert sent["image_url"].startswith("data:image/gif;base64,")


async def test_a_refused_local_file_sends_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    from tests.helpers import make_settings

    gif = tmp_path / "anim.gif"
    gif.write_bytes(GIF_1X1)
    settings = make_settings(
        sandbox, provider="uniapi", uniapi_key=sandbox.config.key, fal_key=None, file_roots=(tmp_path,)
    )
    async with connect(settings) as client:
        answer = await client.call_tool("submit_fal_job", {"model": KLING_I2V, "input": {"image": str(gif)}})
    assert answer.is_error and "takes only image/jpeg or image/png" in text_of(answer)
    assert sandbox.seen() == []


def test_published_patterns_match_the_known_values_in_full() -> None:
    """A client that checks `pattern` itself must accept every known value and refuse what validation refuses."""
    checked = 0
    for model in NATIVE:
        for name, prop in CATALOG[model].params.model_json_schema()["properties"].items():
            if "examples" not in prop:
                continue
            pattern = re.compile(prop["pattern"])
            assert all(pattern.search(value) for value in prop["examples"]), (model, name)
            for value in prop["examples"]:
                assert not pattern.search(f"!{value}") and not pattern.search(f"{value}!"), (model, name, value)
            checked += 1
    assert checked == 8  # Kling's four model_name fields; Luma's model_name, aspect_ratio, resolution, duration


async def test_a_local_file_reaches_the_kling_route_as_raw_base64(sandbox: Sandbox, tmp_path: Path) -> None:
    """Whatever the upstream answers, the body that leaves carries the bare base64 of the file."""
    from tests.helpers import make_settings

    photo = tmp_path / "me.png"
    photo.write_bytes(tiny_png())
    settings = make_settings(
        sandbox, provider="uniapi", uniapi_key=sandbox.config.key, fal_key=None, file_roots=(tmp_path,)
    )
    async with connect(settings) as client:
        await client.call_tool("submit_fal_job", {"model": KLING_I2V, "input": {"image": str(photo), "prompt": "hi"}})
    sent = [r for r in sandbox.seen("POST") if r.path == "/" + KLING_I2V]
    assert len(sent) == 1
    assert sent[0].json() == {"image": base64.b64encode(photo.read_bytes()).decode(), "prompt": "hi"}

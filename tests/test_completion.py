"""Argument completion (`completion/complete`) under both protocol versions: the create_video prompt's arguments
(ideas; local image paths, confined to FAL_MCP_FILE_ROOTS), model ids and recorded request ids."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, PromptReference, ResourceTemplateReference

from server.app import create_server
from server.files.browse import suggest_image_paths
from server.sandbox import Sandbox
from server.settings import Settings
from tests.helpers import SEED_INPUT, SEED_MODEL, make_settings
from tools.catalog import CATALOG
from tools.mcp_completion import IDEAS, IMAGE_IDEAS, JOB_TEMPLATE, MODEL_TEMPLATE

pytestmark = pytest.mark.anyio

MODES = ["legacy", "2026-07-28"]  # legacy: the 2025-11-25 initialize handshake
PROMPT = PromptReference(name="create_video")
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16


@asynccontextmanager
async def connect(settings: Settings, mode: str) -> AsyncIterator[Client]:
    async with Client(create_server(settings), mode=mode) as client:
        yield client


async def values(client: Client, ref: Any, name: str, value: str, **context: str) -> list[str]:
    answer = await client.complete(ref, {"name": name, "value": value}, context_arguments=context or None)
    return answer.completion.values


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A root with images, a folder, a text file, a hidden image and links leading inside and outside it."""
    root = tmp_path / "root"
    (root / "shots").mkdir(parents=True)
    (root / "cat.png").write_bytes(PNG)
    (root / "Cow.JPG").write_bytes(PNG)
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(PNG)
    (root / "shots" / "dog.webp").write_bytes(PNG)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(PNG)
    (root / "link-in.png").symlink_to(root / "cat.png")
    (root / "link-out.png").symlink_to(outside / "secret.png")
    (root / "link-out-dir").symlink_to(outside)
    return root


@pytest.mark.parametrize("mode", MODES)
async def test_idea_suggestions_follow_the_prefix_and_the_chosen_image(settings: Settings, mode: str) -> None:
    async with connect(settings, mode) as client:
        assert await values(client, PROMPT, "idea", "") == list(IDEAS)
        assert await values(client, PROMPT, "idea", "WAVES") == [IDEAS[1]]
        assert await values(client, PROMPT, "idea", "a unicorn") == []
        assert await values(client, PROMPT, "idea", "", image_path="/tmp/cat.png") == list(IMAGE_IDEAS)
        with pytest.raises(MCPError) as err:
            await values(client, PROMPT, "mood", "")
    assert err.value.code == INVALID_PARAMS and "idea and image_path" in str(err.value)


@pytest.mark.parametrize("mode", MODES)
async def test_image_paths_stay_inside_the_roots(sandbox: Sandbox, files: Path, mode: str) -> None:
    settings = make_settings(sandbox, file_roots=(files,))
    root = f"{files}{os.sep}"
    async with connect(settings, mode) as client:
        listed = await values(client, PROMPT, "image_path", root)
        assert listed == [f"{root}Cow.JPG", f"{root}cat.png", f"{root}link-in.png", f"{root}shots{os.sep}"]
        assert await values(client, PROMPT, "image_path", f"{root}c") == [f"{root}cat.png"]
        assert await values(client, PROMPT, "image_path", f"{root}.") == [f"{root}.hidden.png"]
        assert await values(client, PROMPT, "image_path", f"{root}shots/") == [f"{root}shots/dog.webp"]
        # Nothing typed, or a folder outside the roots: the roots themselves, never the outside folder's names.
        assert await values(client, PROMPT, "image_path", "") == [root]
        assert await values(client, PROMPT, "image_path", f"{files.parent}{os.sep}") == [root]
        assert await values(client, PROMPT, "image_path", f"{files.parent}{os.sep}out") == []
        assert await values(client, PROMPT, "image_path", f"{root}..{os.sep}outside{os.sep}") == []
        assert await values(client, PROMPT, "image_path", f"{root}link-out-dir{os.sep}") == []
        assert await values(client, PROMPT, "image_path", "relative/cat") == []


async def test_home_shorthand_is_kept_in_the_suggestions(
    sandbox: Sandbox, files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(files.parent))
    settings = make_settings(sandbox, file_roots=(files,))
    async with connect(settings, "2026-07-28") as client:
        assert await values(client, PROMPT, "image_path", "~/") == [f"~/{files.name}/"]
        assert await values(client, PROMPT, "image_path", f"~/{files.name}/ca") == [f"~/{files.name}/cat.png"]


async def test_image_paths_are_bounded(sandbox: Sandbox, tmp_path: Path) -> None:
    for number in range(150):
        (tmp_path / f"frame{number:03}.png").write_bytes(PNG)
    async with connect(make_settings(sandbox, file_roots=(tmp_path,)), "2026-07-28") as client:
        answer = await client.complete(PROMPT, {"name": "image_path", "value": f"{tmp_path}/frame"})
        assert len(answer.completion.values) == 100  # the protocol's cap
        assert (answer.completion.total, answer.completion.has_more) == (150, True)
        assert answer.completion.values[0] == f"{tmp_path}/frame000.png"
    # Past the scan limit the listing stops and says there may be more, without a total.
    found = suggest_image_paths(f"{tmp_path}/", roots=(tmp_path,), max_entries=10)
    assert len(found.values) == 10 and not found.complete
    async with connect(make_settings(sandbox, file_roots=(tmp_path,), max_completion_scan=10), "legacy") as client:
        answer = await client.complete(PROMPT, {"name": "image_path", "value": f"{tmp_path}/"})
        assert (len(answer.completion.values), answer.completion.total, answer.completion.has_more) == (10, None, True)


def test_no_roots_means_no_suggestions(tmp_path: Path) -> None:
    (tmp_path / "cat.png").write_bytes(PNG)
    assert suggest_image_paths(f"{tmp_path}/", roots=(), max_entries=100).values == []
    assert suggest_image_paths("\0", roots=(tmp_path,), max_entries=100).values == []


@pytest.mark.parametrize("mode", MODES)
async def test_model_ids_by_prefix_in_either_spelling(settings: Settings, mode: str) -> None:
    ref = ResourceTemplateReference(uri=MODEL_TEMPLATE)
    async with connect(settings, mode) as client:
        everything = await client.complete(ref, {"name": "endpoint_id", "value": ""})
        assert everything.completion.values == sorted(CATALOG) and everything.completion.has_more is False
        full = await values(client, ref, "endpoint_id", "fal-ai/veo3")
        assert full and all(value.startswith("fal-ai/veo3") for value in full)
        short = await values(client, ref, "endpoint_id", "veo3")
        assert short == [value.removeprefix("fal-ai/") for value in full]
        assert await values(client, ref, "endpoint_id", "kling-video/v2.1/standard/i") == [
            "kling-video/v2.1/standard/image-to-video"
        ]
        assert await values(client, ref, "endpoint_id", "no-such-model") == []
        # what is suggested can be read
        read = await client.read_resource(f"fal://models/{short[0]}")
        assert f'"model":"{full[0]}"' in read.contents[0].text


@pytest.mark.parametrize("mode", MODES)
async def test_request_ids_of_recorded_jobs_newest_first(sandbox: Sandbox, mode: str) -> None:
    settings = make_settings(sandbox)
    ref = ResourceTemplateReference(uri=JOB_TEMPLATE)
    async with connect(settings, mode) as client:
        assert await values(client, ref, "request_id", "") == []
        submitted = []
        for _ in range(3):
            answer = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
            submitted.append(answer.structured_content["request_id"])
        assert await values(client, ref, "request_id", "") == submitted[::-1]
        assert await values(client, ref, "request_id", submitted[1][:12].upper()) == [submitted[1]]
        assert await values(client, ref, "request_id", "zzz") == []
    # bounded: only the most recent jobs are looked at
    async with connect(settings.model_copy(update={"max_completion_scan": 2}), mode) as client:
        assert await values(client, ref, "request_id", "") == submitted[:0:-1]


@pytest.mark.parametrize("mode", MODES)
async def test_unknown_refs_get_an_empty_completion(settings: Settings, mode: str) -> None:
    """As the conformance suite asks: a prompt or template of no concern to us is not an error."""
    async with connect(settings, mode) as client:
        assert await values(client, PromptReference(name="test_prompt_with_arguments"), "arg1", "x") == []
        assert await values(client, ResourceTemplateReference(uri="fal://nothing/{id}"), "id", "") == []
        assert await values(client, ResourceTemplateReference(uri=JOB_TEMPLATE), "endpoint_id", "") == []

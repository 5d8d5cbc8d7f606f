"""Local files as inputs through the MCP tools: upload_fal_file and paths given directly to submit_fal_job."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest

from server.sandbox import Sandbox
from server.sandbox.media import tiny_png
from tests.helpers import SEED_MODEL, connect, make_settings, text_of

pytestmark = pytest.mark.anyio


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "cat photo.png"
    path.write_bytes(tiny_png())
    return path


def _fal(sandbox: Sandbox, root: Path, **extra: object):
    return make_settings(sandbox, file_roots=(root,), storage_token_base=sandbox.base_url, **extra)


def _uniapi(sandbox: Sandbox, root: Path, **extra: object):
    return make_settings(
        sandbox, provider="uniapi", uniapi_key=sandbox.config.key, fal_key=None, file_roots=(root,), **extra
    )


async def test_upload_with_a_fal_key_goes_to_fal_storage(sandbox: Sandbox, photo: Path, tmp_path: Path) -> None:
    async with connect(_fal(sandbox, tmp_path)) as client:
        answer = await client.call_tool("upload_fal_file", {"path": str(photo)})
    assert not answer.is_error, text_of(answer)
    result = answer.structured_content
    assert result["kind"] == "uploaded" and result["content_type"] == "image/png"
    assert result["url"].startswith(sandbox.base_url + "/storage/files/")
    assert httpx.get(result["url"]).content == photo.read_bytes()
    upload = next(r for r in sandbox.seen("POST") if r.path == "/files/upload")
    assert upload.authorization is not None and sandbox.config.key not in upload.authorization


async def test_upload_with_only_uniapi_gives_a_data_uri(sandbox: Sandbox, photo: Path, tmp_path: Path) -> None:
    async with connect(_uniapi(sandbox, tmp_path)) as client:
        answer = await client.call_tool("upload_fal_file", {"path": photo.as_uri()})
    result = answer.structured_content
    assert result["kind"] == "data_uri" and "data URI" in result["note"]
    prefix = "data:image/png;base64,"
    assert result["url"].startswith(prefix)
    assert base64.b64decode(result["url"].removeprefix(prefix)) == photo.read_bytes()
    assert sandbox.seen() == []


@pytest.mark.parametrize("flavour", ["fal", "uniapi"])
async def test_submit_accepts_a_local_path_in_a_file_field(
    sandbox: Sandbox, photo: Path, tmp_path: Path, flavour: str
) -> None:
    settings = _fal(sandbox, tmp_path) if flavour == "fal" else _uniapi(sandbox, tmp_path)
    body = {"prompt": "the cat blinks", "image_url": str(photo)}
    async with connect(settings) as client:
        answer = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": body})
    assert not answer.is_error, text_of(answer)
    assert any("image_url: local file cat photo.png" in note for note in answer.structured_content["notes"])
    sent = next(r for r in sandbox.seen("POST") if r.path == "/" + SEED_MODEL).json()
    expected = sandbox.base_url + "/storage/files/" if flavour == "fal" else "data:image/png;base64,"
    assert sent["image_url"].startswith(expected) and sent["prompt"] == "the cat blinks"


async def test_hostile_paths_are_refused_and_nothing_is_sent(sandbox: Sandbox, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "notes.png").write_text("id_rsa: not really an image\n")
    (root / "escape.png").symlink_to("/etc/passwd")
    (root / "huge.png").write_bytes(tiny_png() + b"\0" * 5000)
    cases = {
        "/etc/passwd": "outside",
        str(root / "notes.png"): "not an image",
        str(root / "escape.png"): "outside",
        str(root / "huge.png"): "FAL_MCP_MAX_UPLOAD_BYTES",
        str(root / "missing.png"): "",
    }
    async with connect(_fal(sandbox, root, max_upload_bytes=1000)) as client:
        for path, phrase in cases.items():
            for tool, args in (
                ("upload_fal_file", {"path": path}),
                ("submit_fal_job", {"model": SEED_MODEL, "input": {"prompt": "x", "image_url": path}}),
            ):
                answer = await client.call_tool(tool, args)
                assert answer.is_error, (tool, path)
                assert phrase.lower() in text_of(answer).lower(), (tool, path, text_of(answer))
                assert "root:x:0:0" not in text_of(answer)
    assert sandbox.seen() == []

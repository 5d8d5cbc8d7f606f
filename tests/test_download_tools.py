"""get_fal_result(download=true): media saved on disk, recorded in the ledger; hostile media URLs refused."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from server.sandbox import Fault, Sandbox
from server.sandbox.media import tiny_mp4
from tests.helpers import SEED_INPUT, SEED_MODEL, connect, make_settings, text_of

pytestmark = pytest.mark.anyio


async def test_download_saves_the_media_and_records_it(sandbox: Sandbox, tmp_path: Path) -> None:
    settings = make_settings(sandbox, download_dir=tmp_path / "downloads")
    async with connect(settings) as client:
        sub = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
        request_id = sub.structured_content["request_id"]
        sandbox.finish_now(request_id)
        answer = await client.call_tool("get_fal_result", {"request_id": request_id, "download": True})
        again = await client.call_tool("get_fal_result", {"request_id": request_id, "download": True})
        listed = (await client.call_tool("list_fal_jobs", {})).structured_content
    assert not answer.is_error, text_of(answer)
    (saved,) = answer.structured_content["downloads"]
    path = Path(saved["path"])
    assert path.parent == tmp_path / "downloads" and path.name.startswith(request_id[:8])
    assert path.read_bytes() == tiny_mp4()
    assert saved["sha256"] == hashlib.sha256(tiny_mp4()).hexdigest() and saved["size"] == len(tiny_mp4())
    assert again.structured_content["downloads"][0]["path"] == saved["path"]  # same file reused, no copy
    assert sorted(p.name for p in (tmp_path / "downloads").iterdir()) == [path.name]  # no .part left behind
    assert listed["jobs"][0]["downloads"] == [saved["path"]]
    media_gets = [r for r in sandbox.seen("GET") if r.path.startswith("/files/")]
    assert media_gets and all(r.authorization is None for r in media_gets)  # the key never goes to media hosts


async def test_hostile_media_urls_are_not_fetched(sandbox: Sandbox, tmp_path: Path) -> None:
    output = {
        "video": {"url": "http://169.254.169.254/latest/meta-data", "content_type": "video/mp4"},
        "extra": {"url": "file:///etc/passwd"},
    }
    sandbox.inject(Fault("GET /fal-ai/kling-video/requests/", status=200, body=json.dumps(output).encode()))
    settings = make_settings(sandbox, download_dir=tmp_path / "downloads")
    async with connect(settings) as client:
        answer = await client.call_tool("get_fal_result", {"request_id": "abc", "model": SEED_MODEL, "download": True})
    assert not answer.is_error, text_of(answer)
    result = answer.structured_content
    assert result["done"] is True and result["downloads"] == []
    assert len(result["download_problems"]) == 1 and "video" in result["download_problems"][0]
    assert not (tmp_path / "downloads").exists() or not any((tmp_path / "downloads").iterdir())

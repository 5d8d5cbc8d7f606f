"""A snapshot of what `tools/list` publishes: any change to a tool's schema shows up in review.

Refresh on purpose with `UPDATE_SNAPSHOTS=1 pytest tests/test_snapshot.py`, then read the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers import connect

pytestmark = pytest.mark.anyio
SNAPSHOT = Path(__file__).parent / "snapshots" / "tools_list.json"


async def test_tools_list_matches_the_snapshot(settings) -> None:
    async with connect(settings) as client:
        listed = await client.list_tools()
    current = [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in listed.tools]
    text = json.dumps(current, indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(text)
    assert SNAPSHOT.exists(), "no snapshot yet: run with UPDATE_SNAPSHOTS=1 and review it"
    assert json.loads(SNAPSHOT.read_text()) == current, "tools/list changed: review, then refresh the snapshot"


async def test_every_tool_has_title_description_and_annotations(settings) -> None:
    async with connect(settings) as client:
        listed = await client.list_tools()
    for tool in listed.tools:
        assert tool.title and tool.description and len(tool.description) > 40, tool.name
        assert tool.annotations is not None, tool.name
        assert tool.output_schema is not None, tool.name
    by_name = {tool.name: tool for tool in listed.tools}
    assert by_name["get_fal_status"].annotations.read_only_hint is True
    # get_fal_result keeps results in the ledger and may download files: not read-only, but idempotent
    assert by_name["get_fal_result"].annotations.read_only_hint is False
    assert by_name["get_fal_result"].annotations.idempotent_hint is True
    assert by_name["submit_fal_job"].annotations.read_only_hint is False
    assert by_name["submit_fal_job"].annotations.idempotent_hint is False
    assert by_name["cancel_fal_job"].annotations.destructive_hint is True
    for name in ("submit_fal_job", "get_fal_status", "get_fal_result", "cancel_fal_job"):
        assert by_name[name].annotations.open_world_hint is True, name
    for name in ("list_fal_models", "describe_fal_model", "list_fal_jobs"):  # the catalog and ledger are local
        assert by_name[name].annotations.open_world_hint is False, name
        assert by_name[name].annotations.read_only_hint is True, name

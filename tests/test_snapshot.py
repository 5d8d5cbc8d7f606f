"""Snapshots of what `tools/list` publishes, one file per tool (tests/snapshots/tools/<name>.json): any change to
a tool's schema shows up in review as a diff of that tool's file, and a tool added or removed without its
snapshot fails here.

Refresh on purpose with `UPDATE_SNAPSHOTS=1 pytest tests/test_snapshot.py`, then read the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import TOOLS_LIST_LIMIT_BYTES, connect, tools_list_wire

pytestmark = pytest.mark.anyio
SNAPSHOTS = Path(__file__).parent / "snapshots" / "tools"


def _render(tool: dict[str, Any]) -> str:
    return json.dumps(tool, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


async def _published(settings) -> list[dict[str, Any]]:
    async with connect(settings) as client:
        listed = await client.list_tools()
    return [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in listed.tools]


async def test_each_tool_matches_its_snapshot(settings) -> None:
    current = {tool["name"]: tool for tool in await _published(settings)}
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOTS.mkdir(parents=True, exist_ok=True)
        for stale in SNAPSHOTS.glob("*.json"):
            if stale.stem not in current:
                stale.unlink()
        for name, tool in current.items():
            (SNAPSHOTS / f"{name}.json").write_text(_render(tool))
    snapshotted = {path.stem for path in SNAPSHOTS.glob("*.json")}
    assert set(current) - snapshotted == set(), "a tool without a snapshot: run with UPDATE_SNAPSHOTS=1, review"
    assert snapshotted - set(current) == set(), "a snapshot of a tool that is gone: refresh, and review"
    changed = [name for name, tool in current.items() if json.loads((SNAPSHOTS / f"{name}.json").read_text()) != tool]
    assert changed == [], f"tools/list changed for {changed}: review, then refresh the snapshots"


async def test_the_whole_tools_list_stays_small(settings) -> None:
    async with connect(settings) as client:
        wire = await tools_list_wire(client)
    assert len(wire.encode()) < TOOLS_LIST_LIMIT_BYTES, len(wire.encode())


def test_snapshots_are_stored_as_written() -> None:
    """Each file is exactly what a refresh writes, so a refresh's diff shows only what changed."""
    files = sorted(SNAPSHOTS.glob("*.json"))
    assert files
    for path in files:
        tool = json.loads(path.read_text())
        assert tool["name"] == path.stem
        assert path.read_text() == _render(tool), f"{path.name} was edited by hand or written differently"


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
    # describe_fal_model: its price may be asked of fal's pricing API
    for name in ("submit_fal_job", "get_fal_status", "get_fal_result", "cancel_fal_job", "describe_fal_model"):
        assert by_name[name].annotations.open_world_hint is True, name
    assert by_name["describe_fal_model"].annotations.read_only_hint is True
    for name in ("list_fal_models", "list_fal_jobs"):  # the catalog and ledger are local
        assert by_name[name].annotations.open_world_hint is False, name
        assert by_name[name].annotations.read_only_hint is True, name

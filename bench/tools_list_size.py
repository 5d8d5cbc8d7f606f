"""tools/list size: bytes of the compact JSON result as served over stdio, and the featured models it carries."""

from __future__ import annotations

import json
from typing import Any

from bench.common import (
    BASELINE_COMMAND,
    INFO,
    OURS_COMMAND,
    Report,
    Row,
    Table,
    cold_start_env,
    progress,
    spawn_and_list_tools,
    temp_state_dir,
    verdict,
)
from tools.catalog import CATALOG

NAME = "tools_list_size"
TARGET_BYTES = 16384


def compact_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def run(quick: bool) -> Report:
    del quick  # one measurement; nothing to repeat
    report = Report(NAME)
    with temp_state_dir() as state_dir:
        env = cold_start_env(state_dir)
        progress("tools/list size: one session each")
        ours = spawn_and_list_tools(OURS_COMMAND, env).result
        base = spawn_and_list_tools(BASELINE_COMMAND, env).result
    size = compact_size(ours)
    report.rows.append(
        Row(
            "tools/list result, compact JSON",
            f"{size} B",
            f"{compact_size(base)} B",
            f"{size / TARGET_BYTES:.0%} of target (<= {TARGET_BYTES} B)",
            verdict(size <= TARGET_BYTES),
        )
    )
    featured = [endpoint_id for endpoint_id, entry in CATALOG.items() if entry.featured]
    text = json.dumps(ours)
    carried = [endpoint_id for endpoint_id in featured if endpoint_id in text]
    report.rows.append(
        Row(
            "tools/list: tools / featured models typed in submit_fal_job",
            f"{len(ours['tools'])} tools / {len(carried)} of {len(featured)} featured",
            f"{len(base['tools'])} tools",
            "",
            INFO,
        )
    )
    report.notes.append("featured models carried in tools/list: " + ", ".join(carried))
    if missing := sorted(set(featured) - set(carried)):
        report.notes.append("featured models NOT found in tools/list: " + ", ".join(missing))
    report.tables.append(
        Table(
            "tools/list bytes per tool (compact JSON)",
            ["tool", "bytes", "inputSchema", "outputSchema"],
            [
                [
                    tool["name"],
                    str(compact_size(tool)),
                    str(compact_size(tool.get("inputSchema", {}))),
                    str(compact_size(tool.get("outputSchema", {}))),
                ]
                for tool in sorted(ours["tools"], key=compact_size, reverse=True)
            ],
        )
    )
    return report

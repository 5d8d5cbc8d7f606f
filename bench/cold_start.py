"""Cold start: spawn -> first tools/list answer over stdio, ours vs a trivial three-tool MCPServer.

Interleaved runs (ours, baseline, ours, baseline, ...) after one untimed warm-up of each, so both see the same
machine; the figure is the ratio of the medians. Then one run of each under `python -X importtime` serving the
same tools/list, to show where our extra time goes, and an in-process split of ours into phases.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
from dataclasses import dataclass

from bench.common import (
    BASELINE_COMMAND,
    INFO,
    OURS_COMMAND,
    PYTHON,
    ROOT,
    Report,
    Row,
    Table,
    cold_start_env,
    progress,
    spawn_and_list_tools,
    temp_state_dir,
    verdict,
)

NAME = "cold_start"
TARGET_RATIO = 0.90
# Idle memory: VmRSS a while after the tools/list answer, once the background work (watcher, relay: 1 s after the
# start) has begun, ours minus the trivial server's.
IDLE_SECONDS = 3.0
IDLE_PAIRS = 3
TARGET_IDLE_EXTRA_MIB = 5.0

_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")

# Timed in a fresh interpreter: what ours does before it can answer, split into phases (median of 3).
_PHASES_SCRIPT = """
import json, time
t0 = time.perf_counter()
import mcp.server.mcpserver
t1 = time.perf_counter()
import server.cli, server.app
from server.settings import Settings
import importlib
for name in ("tools.mcp_tools", "tools.mcp_resources"):
    try:
        importlib.import_module(name)
    except ImportError:
        pass
t2 = time.perf_counter()
settings = Settings.from_env()
server.app.create_server(settings)
t3 = time.perf_counter()
print(json.dumps({"mcp": t1 - t0, "ours_imports": t2 - t1, "create_server": t3 - t2}))
"""


@dataclass
class ImportRecord:
    name: str
    depth: int
    self_us: int
    cumulative_us: int
    extra_us: int = 0  # self time, over this module's subtree, of modules the baseline does not import
    parent: str = "(top level)"
    largest_child_us: int = 0  # the `extra_us` of its costliest direct import


def parse_importtime(stderr: str) -> list[ImportRecord]:
    records = []
    for line in stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if match:
            self_us, cumulative_us, indent, name = match.groups()
            records.append(ImportRecord(name, len(indent) // 2, int(self_us), int(cumulative_us)))
    return records


def attribute_extra(records: list[ImportRecord], baseline_names: set[str]) -> None:
    """Fill `extra_us`: importtime prints children (deeper) before their parent, so fold them on a stack."""
    pending: list[tuple[ImportRecord, int]] = []  # (record, extra of its subtree), children not yet folded
    for record in records:
        extra = 0 if record.name in baseline_names else record.self_us
        while pending and pending[-1][0].depth > record.depth:
            child, child_extra = pending.pop()
            child.parent = record.name
            record.largest_child_us = max(record.largest_child_us, child_extra)
            extra += child_extra
        record.extra_us = extra
        pending.append((record, extra))


def run(quick: bool) -> Report:
    report = Report(NAME)
    pairs = 7 if quick else 15
    with temp_state_dir() as state_dir, temp_state_dir() as pycache:
        env = cold_start_env(state_dir, pycache_prefix=pycache)
        progress(f"cold start: warm-up, then {pairs} interleaved pairs")
        spawn_and_list_tools(OURS_COMMAND, env)  # warm-up: page cache and .pyc files for both
        spawn_and_list_tools(BASELINE_COMMAND, env)
        ours: list[float] = []
        base: list[float] = []
        for pair in range(pairs):
            # Who goes first alternates: on a busy machine the second of two back-to-back starts fares differently.
            if pair % 2:
                base.append(spawn_and_list_tools(BASELINE_COMMAND, env).seconds)
                ours.append(spawn_and_list_tools(OURS_COMMAND, env).seconds)
            else:
                ours.append(spawn_and_list_tools(OURS_COMMAND, env).seconds)
                base.append(spawn_and_list_tools(BASELINE_COMMAND, env).seconds)
        ratio = statistics.median(ours) / statistics.median(base)
        report.rows.append(
            Row(
                "cold start: spawn -> tools/list answer (median)",
                f"{statistics.median(ours) * 1000:.0f} ms",
                f"{statistics.median(base) * 1000:.0f} ms",
                f"{ratio:.2f}x (<= {TARGET_RATIO:.2f}x)",
                verdict(ratio <= TARGET_RATIO),
            )
        )
        paired = statistics.median(o / b for o, b in zip(ours, base, strict=True))
        report.rows.append(
            Row(
                "cold start: extra time over baseline (median)",
                f"+{(statistics.median(ours) - statistics.median(base)) * 1000:.0f} ms",
                "",
                f"paired ratio median {paired:.2f}x, min/min {min(ours) / min(base):.2f}x",
                INFO,
            )
        )

        progress(f"cold start: idle memory, {IDLE_PAIRS} interleaved pairs")
        ours_rss: list[float] = []
        base_rss: list[float] = []
        for _ in range(IDLE_PAIRS):
            ours_rss.append(spawn_and_list_tools(OURS_COMMAND, env, idle_seconds=IDLE_SECONDS).idle_rss_kib / 1024)
            base_rss.append(spawn_and_list_tools(BASELINE_COMMAND, env, idle_seconds=IDLE_SECONDS).idle_rss_kib / 1024)
        extra_mib = statistics.median(ours_rss) - statistics.median(base_rss)
        report.rows.append(
            Row(
                f"idle memory: VmRSS {IDLE_SECONDS:.0f} s after the tools/list answer (median of {IDLE_PAIRS})",
                f"{statistics.median(ours_rss):.1f} MiB",
                f"{statistics.median(base_rss):.1f} MiB",
                f"+{extra_mib:.1f} MiB, {statistics.median(ours_rss) / statistics.median(base_rss):.2f}x "
                f"(<= +{TARGET_IDLE_EXTRA_MIB:.0f} MiB)",
                verdict(extra_mib <= TARGET_IDLE_EXTRA_MIB),
            )
        )

        progress("cold start: -X importtime of one tools/list session each")
        ours_imports = parse_importtime(
            spawn_and_list_tools([PYTHON, "-X", "importtime", *OURS_COMMAND[1:]], env).stderr
        )
        base_imports = parse_importtime(
            spawn_and_list_tools([PYTHON, "-X", "importtime", *BASELINE_COMMAND[1:]], env).stderr
        )
        baseline_names = {r.name for r in base_imports}
        attribute_extra(ours_imports, baseline_names)
        # A module whose cost is nearly all one import's (a pass-through, e.g. a package __init__) would only
        # repeat that import's figure: list the import instead, with "imported by" naming the pass-through.
        telling = (r for r in ours_imports if r.extra_us > 0 and r.largest_child_us < 0.85 * r.extra_us)
        top = sorted(telling, key=lambda r: -r.extra_us)[:10]
        report.tables.append(
            Table(
                "Cold start, where ours spends its extra import time (python -X importtime, one tools/list "
                "session; 'extra' = self time in the subtree of modules the baseline never imports; modules whose "
                "cost is nearly all one import's are left out in favour of that import)",
                ["module", "imported by", "extra ms", "cumulative ms", "self ms"],
                [
                    [
                        r.name,
                        r.parent,
                        f"{r.extra_us / 1000:.1f}",
                        f"{r.cumulative_us / 1000:.1f}",
                        f"{r.self_us / 1000:.1f}",
                    ]
                    for r in top
                ],
            )
        )
        only_ours = [r for r in ours_imports if r.name not in baseline_names]
        report.notes.append(
            f"importtime totals (self times summed; importtime inflates them): ours {len(ours_imports)} modules "
            f"{sum(r.self_us for r in ours_imports) / 1000:.0f} ms, baseline {len(base_imports)} modules "
            f"{sum(r.self_us for r in base_imports) / 1000:.0f} ms; the {len(only_ours)} modules only ours imports: "
            f"{sum(r.self_us for r in only_ours) / 1000:.0f} ms, first-party (server.*, tools.*): "
            f"{sum(r.self_us for r in ours_imports if r.name.split('.')[0] in ('server', 'tools')) / 1000:.0f} ms."
        )

        progress("cold start: in-process phases of ours (3 runs)")
        phases: list[dict[str, float]] = []
        for _ in range(3):
            done = subprocess.run(
                [PYTHON, "-c", _PHASES_SCRIPT], capture_output=True, timeout=60, env=env, cwd=ROOT, check=True
            )
            phases.append(json.loads(done.stdout.decode().strip().splitlines()[-1]))
        labels = {
            "mcp": "import mcp.server.mcpserver (the baseline pays this too)",
            "ours_imports": "import server.cli, server.app, tools.mcp_tools, tools.mcp_resources",
            "create_server": "Settings.from_env() + create_server() (tool schemas built)",
        }
        report.tables.append(
            Table(
                "Cold start, ours split into phases (fresh interpreter, median of 3)",
                ["phase", "ms"],
                [[label, f"{statistics.median(p[key] for p in phases) * 1000:.0f}"] for key, label in labels.items()],
            )
        )
    return report

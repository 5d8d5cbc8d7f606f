"""`python -m bench [--quick] [--only NAME]`: run the benchmarks against the local sandbox, print one table.

Without --only, each benchmark runs in its own child process (`python -m bench --only NAME --json-out FILE`),
so memory and import state never leak from one to the next, and a hard timeout ends any that overruns.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType

from bench.common import ERROR, PYTHON, ROOT, Report, Row, markdown_table, progress

# name -> (module, timeout for a quick run, timeout for a full run), in the order they run
BENCHMARKS: dict[str, tuple[str, float, float]] = {
    "cold_start": ("bench.cold_start", 90, 240),
    "tools_list_size": ("bench.tools_list_size", 30, 30),
    "call_overhead": ("bench.call_overhead", 60, 150),
    "throughput": ("bench.throughput", 60, 200),
    "waiting_economy": ("bench.waiting_economy", 90, 130),
    "concurrency": ("bench.concurrency", 150, 150),
    "scale_out": ("bench.scale_out", 200, 260),
    "viewer_polling": ("bench.viewer_polling", 30, 30),
    "ledger_scale": ("bench.ledger_scale", 300, 900),
    "tasks": ("bench.tasks", 60, 120),
    "money": ("bench.money", 60, 150),
}


def _load(name: str) -> Callable[[bool], Report]:
    import importlib

    module: ModuleType = importlib.import_module(BENCHMARKS[name][0])
    run: Callable[[bool], Report] = module.run
    return run


def _run_here(name: str, quick: bool) -> Report:
    started = time.monotonic()
    try:
        report = _load(name)(quick)
    except Exception as exc:  # a broken benchmark is a row in the table, not a crash of the whole run
        report = Report(name, rows=[Row(name, "FAILED", "", f"{type(exc).__name__}: {exc}"[:200], ERROR)])
    report.seconds = time.monotonic() - started
    return report


def _run_child(name: str, quick: bool) -> Report:
    timeout = BENCHMARKS[name][1 if quick else 2]
    with tempfile.TemporaryDirectory(prefix="fal-mcp-bench-") as scratch:
        out = Path(scratch) / "report.json"
        command = [PYTHON, "-m", "bench", "--only", name, "--json-out", str(out)] + (["--quick"] if quick else [])
        started = time.monotonic()
        # Own session, so a timeout can end the child and the servers it spawned, and nothing else.
        child = subprocess.Popen(command, cwd=ROOT, start_new_session=True, stdout=sys.stderr)
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            return Report(name, rows=[Row(name, "TIMEOUT", "", f"stopped after {timeout:.0f} s", ERROR)])
        if child.returncode != 0 or not out.exists():
            return Report(name, rows=[Row(name, "FAILED", "", f"child exited {child.returncode}", ERROR)])
        report = Report.from_json(json.loads(out.read_text()))
        report.seconds = time.monotonic() - started
        return report


def _source_state() -> str:
    """The commit measured, and whether the working tree differed from it (read-only git calls)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "source: unknown (no git)"
    return f"source: {head}" + (f" + {len(changed)} uncommitted changed files" if changed else "")


def render(reports: list[Report], quick: bool) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")  # noqa: UP017 - reads plainly
    cpus = os.cpu_count()
    lines = [
        f"fal-queue-mcp benchmarks, {'--quick' if quick else 'full'} run, {stamp}, "
        f"Python {sys.version.split()[0]}, {cpus} CPUs, {_source_state()}",
        "",
        markdown_table(
            ["figure", "ours", "baseline", "ratio/target", "verdict"],
            [[r.figure, r.ours, r.baseline, r.target, r.verdict] for report in reports for r in report.rows],
        ),
    ]
    for report in reports:
        for table in report.tables:
            lines += ["", table.title, "", markdown_table(table.header, table.rows)]
    notes = [note for report in reports for note in report.notes]
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    lines += ["", "time per benchmark: " + ", ".join(f"{r.name} {r.seconds:.0f} s" for r in reports)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, for a smoke run (about 90 s)")
    parser.add_argument("--only", choices=list(BENCHMARKS), help="run one benchmark, in this process")
    parser.add_argument("--json-out", help=argparse.SUPPRESS)  # used by the parent to collect a child's report
    args = parser.parse_args(argv)
    if args.only:
        report = _run_here(args.only, args.quick)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(report.to_json()))
            return 0
        reports = [report]
    else:
        reports = []
        for name in BENCHMARKS:
            progress(f"--- {name}")
            reports.append(_run_child(name, args.quick))
    print(render(reports, args.quick))
    # A missed target is a result (verdict MISS, exit 0); a benchmark that could not run is a failure.
    return 1 if any(r.verdict == ERROR for report in reports for r in report.rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())

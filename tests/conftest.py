"""Shared fixtures: a real sandbox upstream on 127.0.0.1 and settings pointing at it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.sandbox import Sandbox, SandboxConfig
from server.settings import Settings
from tests.helpers import make_settings, remove_scratch_dirs
from tools.catalog.sandbox_rules import CatalogRules

pytest_plugins = ["tests.postgres"]  # PostgreSQL: one cluster per session, `postgres_url`, `backend`


# ---- a run leaves nothing in the temp folder ------------------------------------------------------------------------

# Set by the controlling process for its xdist workers and every server the tests start (they inherit TMPDIR): the
# run's own temp folder. Everything the run puts in the temp folder lands there, apart from whatever else on the
# machine uses the temp folder meanwhile, so its end can tell exactly what the run left behind.
RUN_TEMP_VARIABLE = "PYTEST_FAL_MCP_TEMP"
# Left there on purpose: pytest's own folders (tmp_path), and the PostgreSQL cluster, stopped and removed by
# tests/postgres.py after the session ends.
EXPECTED_IN_RUN_TEMP = ("pytest-of-", "fal-mcp-pg-")
RUN_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(tryfirst=True)  # before tests/postgres.py makes its folder, and before pytest picks its own
def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or config.getoption("basetemp"):
        return
    run_temp = tempfile.mkdtemp(prefix="fal-mcp-")  # short: PostgreSQL's socket path lives below it
    os.chmod(run_temp, 0o711)  # as the temp folder is: run as root, PostgreSQL's own user must reach its folder
    os.environ[RUN_TEMP_VARIABLE] = os.environ["TMPDIR"] = run_temp
    tempfile.tempdir = None  # read TMPDIR again


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Each process removes its helpers' folders; then the controlling one (or the only one) fails the run if
    anything else was left in the run's temp folder: a server start, a helper or a test that does not clean up."""
    remove_scratch_dirs()
    run_temp = os.environ.get(RUN_TEMP_VARIABLE)
    if hasattr(session.config, "workerinput") or run_temp is None:
        return
    left = sorted(entry.name for entry in Path(run_temp).iterdir() if not entry.name.startswith(EXPECTED_IN_RUN_TEMP))
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_sep("=", "the run left these in the temp folder", red=True)
            reporter.write_line(f"{run_temp}: {', '.join(left)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    session.config.stash[RUN_FAILED] = session.exitstatus not in (
        pytest.ExitCode.OK,
        pytest.ExitCode.NO_TESTS_COLLECTED,
    )


@pytest.hookimpl(trylast=True)  # after tests/postgres.py has stopped its cluster
def pytest_unconfigure(config: pytest.Config) -> None:
    """A passing run removes its temp folder; a failing one keeps it (tmp_path folders help find out why)."""
    run_temp = os.environ.pop(RUN_TEMP_VARIABLE, None)
    if hasattr(config, "workerinput") or run_temp is None:
        return
    if config.stash.get(RUN_FAILED, False):
        print(f"\nthis run's temp folder is kept for inspection: {run_temp}")
    else:
        shutil.rmtree(run_temp, ignore_errors=True)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    config = SandboxConfig(queue_seconds=0.2, run_seconds=0.6, key="test-key-0123456789")
    with Sandbox(config, CatalogRules()) as running:
        yield running


@pytest.fixture
def settings(sandbox: Sandbox) -> Settings:
    return make_settings(sandbox)


# `pytest -n auto` (pyproject: --dist loadgroup --no-loadscope-reorder) hands tests to the workers one at a time in
# collection order, except that the tests of one xdist_group (a module whose tests share a costly fixture) go to one
# worker together. These files, whose tests take many seconds (real server processes, long jobs, a browser), are
# handed out first, the longest first, so that the workers finish together rather than one of them running a long
# test alone at the end. Any other file follows in its usual order.
RUN_FIRST = (
    "test_scale_out.py",
    "test_fuzz.py",
    "test_viewer_browser.py",
    "test_conformance.py",
    "test_examples.py",
    "test_ledger_processes.py",
    "test_cli.py",
    "test_bundle.py",
    "test_hostile_http.py",
    "test_stdin_garbage.py",
    "test_fault_matrix.py",
    "test_job_updates.py",
    "test_stdio.py",
    "test_ledger_postgres.py",
    "test_key_confinement.py",
    "test_job_events.py",
)
MAX_AUTO_WORKERS = 8  # `-n auto` never starts more workers than this, whatever the core count


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: two workers a core. Half of the suite's time is waiting (server processes starting, jobs running,
    timeouts running out), so one worker a core leaves the cores idle half the time (2 cores: 221 s with 2 workers,
    166 s with 4). Capped, so a big machine does not start dozens of servers and browsers at once."""
    return min(2 * (os.cpu_count() or 1), MAX_AUTO_WORKERS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: n for n, name in enumerate(RUN_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(RUN_FIRST)))  # stable: a file keeps its order


UNGROUPED: list[str] = []  # grouped tests that --dist loadgroup failed to group (see below)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """On an xdist worker under --dist loadgroup, each grouped test's id must carry its group (pytest-xdist marks
    it so for the scheduler). Without it the groups are silently ignored (pytest-xdist#1386, with pytest 9.2), and
    every worker runs the costly module fixtures again: the grouped tests then fail, saying why."""
    config = session.config
    if hasattr(config, "workerinput") and config.getoption("loadgroup", default=False):
        UNGROUPED.extend(
            item.nodeid for item in session.items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid
        )


@pytest.fixture(autouse=True)
def _grouped_as_marked(request: pytest.FixtureRequest) -> None:
    if UNGROUPED and request.node.get_closest_marker("xdist_group"):
        pytest.fail(f"--dist loadgroup did not group {UNGROUPED[0]} (pytest-xdist#1386): install the pinned pytest")

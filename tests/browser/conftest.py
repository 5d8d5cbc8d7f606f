"""Fixtures of the browser tests: Chromium (Debian's, driven by playwright), the host bundle, the server under
test, the host page's server. Missing prerequisites skip these tests, or fail them when
FAL_MCP_REQUIRE_BROWSER=1 (as CI sets it, having installed them)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.browser import harness
from tests.helpers import clean_env

REQUIRED = os.environ.get("FAL_MCP_REQUIRE_BROWSER") == "1"
SETUP = "pip install '.[browser]', apt-get install chromium, npm ci in tests/browser"


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    if not Path(harness.CHROMIUM).exists():
        return f"no Chromium at {harness.CHROMIUM}"
    if shutil.which("node") is None:
        return "node is not installed"
    if not (harness.HERE / "node_modules" / ".bin" / "esbuild").exists():
        return "tests/browser/node_modules is missing"
    return None


@pytest.fixture(scope="session")
def browser_ready() -> None:
    missing = _missing()
    if missing is not None:
        message = f"browser tests need more: {missing} ({SETUP})"
        if REQUIRED:
            pytest.fail(message + "; FAL_MCP_REQUIRE_BROWSER=1 makes this a failure")
        pytest.skip(message)


@pytest.fixture(scope="session")
def host_bundle(browser_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return harness.build_host(tmp_path_factory.mktemp("host"))


# The sandbox's jobs: queued 0.5 s, then running 3 s with four log lines. The view's polling intervals are
# the server's own (FAL_MCP_POLL_*), shortened here so the tests see several polls in one job.
POLL_FIRST_SECONDS = 0.5
POLL_MAX_SECONDS = 1.0


@contextmanager
def _serving_views(host_bundle: Path, log: Path, run_seconds: float) -> Iterator[dict[str, str]]:
    """The server under test (its sandbox's jobs running `run_seconds`) behind the host page's server: the host
    page's origin, the view's sandbox origin, and the server's own MCP URL."""
    env = clean_env(
        FAL_MCP_POLL_FIRST_INTERVAL=str(POLL_FIRST_SECONDS),
        FAL_MCP_POLL_MAX_INTERVAL=str(POLL_MAX_SECONDS),
    )
    args = ("--sandbox-queue-seconds", "0.5", "--sandbox-run-seconds", str(run_seconds))
    with harness.running_server(env, log, *args) as url, harness.serving(harness.host_app(host_bundle, url)) as port:
        yield {"host": f"http://localhost:{port}", "sandbox": f"http://127.0.0.1:{port}", "mcp": url}


@pytest.fixture(scope="module")
def origins(host_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with _serving_views(host_bundle, tmp_path_factory.mktemp("server") / "stderr.log", run_seconds=3) as origins:
        yield origins


@pytest.fixture(scope="module")
def slow_origins(host_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Like `origins`, with jobs that run for minutes: a cancel always reaches a running job, however slow the
    machine is (a 3-second job could finish before the click's cancel_fal_job arrives)."""
    with _serving_views(host_bundle, tmp_path_factory.mktemp("server") / "stderr.log", run_seconds=600) as origins:
        yield origins


@pytest.fixture(scope="module")
def browser(browser_ready: None) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=harness.CHROMIUM, headless=True, args=harness.CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    page = browser.new_page(viewport=harness.VIEWPORT)
    console: list[str] = []
    page.on("console", lambda message: console.append(f"[{message.type}] {message.text}"))
    page.on("pageerror", lambda error: console.append(f"[pageerror] {error}"))
    try:
        yield page
    finally:
        page.goto("about:blank")  # close the page's MCP session before the server goes
        page.close()
        print("\n".join(console))  # shown by pytest when the test failed

"""The README's code examples run as written (offline, against the sandbox)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.helpers import clean_env

ROOT = Path(__file__).resolve().parents[1]


def test_agent_client_example_runs(tmp_path: Path) -> None:
    # from a folder of the user's own whose server.py would hide the server from `python -m server`
    (tmp_path / "server.py").write_text("raise SystemExit('the user own server.py was imported')\n")
    # its `--sandbox` server keeps the sandbox's state in the user state folder: a home of the test's own
    env = clean_env(HOME=str(tmp_path / "home"))
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "agent_client.py")],
        capture_output=True,
        timeout=90,
        env=env,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().strip().startswith("http://127.0.0.1:")
    assert done.stdout.decode().strip().endswith("/output.mp4")


def test_claude_desktop_example_config_is_valid() -> None:
    config = json.loads((ROOT / "claude_desktop_config.example.json").read_text())
    entry = config["mcpServers"]["fal-queue"]
    # run as the reference servers are: uvx and the package name, which is the console script's; until the package
    # is published, from the repository (the form that works today)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    repository = "git+" + project["urls"]["Repository"]
    assert (entry["command"], entry["args"]) == ("uvx", ["--from", repository, "fal-queue-mcp"])
    assert "UNIAPI_KEY" in entry["env"]
    assert "fal-queue-mcp" in project["scripts"]
    assert json.dumps(entry["args"]) in (ROOT / "README.md").read_text()  # the README shows the same entry

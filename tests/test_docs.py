"""The README documents every setting and every tool (one place per fact: the code; the docs must follow it)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from server.settings import ENV_NAMES
from tools.mcp_tools import build_tools

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_readme() -> None:
    missing = [variable for variable in ENV_NAMES.values() if f"`{variable}`" not in README]
    assert missing == []


def test_every_tool_is_in_the_readme() -> None:
    missing = [tool.name for tool in build_tools() if f"`{tool.name}(" not in README]
    assert missing == []


def test_the_two_fresh_machine_commands_are_near_the_top() -> None:
    head = README[:1500]
    assert "pip install . && fal-queue-mcp demo" in head
    assert 'pip install ".[test]" && pytest' in head


def test_the_contributor_install_is_named_with_the_checks() -> None:
    """`mypy` fails without psycopg's types: the README says which install makes the development checks pass."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    checks = README.index("Development checks")
    install = README.index('pip install -e ".[test,postgres,bundle]"', checks)
    assert install - checks < 300 and {"test", "postgres", "bundle"} <= set(extras)


def test_the_form_that_works_today_comes_first() -> None:
    """Until the package is on PyPI, every client snippet runs it from the repository (or a clone) first."""
    today, published = "uvx --from git+https://github.com/fal-queue-mcp/fal-queue-mcp", "uvx fal-queue-mcp"
    assert README.index(today) < README.index(published)
    for snippet in ("claude mcp add fal-queue", "@modelcontextprotocol/inspector", '"command": "uvx"'):
        at = README.index(snippet)
        assert "git+https://github.com/fal-queue-mcp/fal-queue-mcp" in README[at : at + 200], snippet


def test_benchmark_commands_run_anywhere() -> None:
    """bench/README.md's commands are the ones anyone can type, not one machine's interpreter path."""
    text = (Path(__file__).resolve().parents[1] / "bench" / "README.md").read_text()
    commands = [line for block in text.split("```sh")[1:] for line in block.split("```")[0].strip().splitlines()]
    assert commands and all(line.startswith("python -m bench") for line in commands), commands

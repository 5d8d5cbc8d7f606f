"""The layout's rules, read from the code's own imports: the core stays protocol-free, and each concern's
package depends only on what sits below it.

- `server/upstream`, `server/jobs`, `server/files` (the core) import neither `mcp` nor `tools`;
- `server/sandbox` (a fake upstream) imports neither, and no part of the core imports the sandbox;
- only the composition root (`server/app.py`), the command line, the demo and the HTTP transport import `mcp`
  under `server/`, and only the composition root and the command line import `tools`;
- nothing imports the composition root back: the tools and the core take `Runtime` from `server/runtime.py`, which
  sits below both the root and the tools, so the import graph has no circle through the root.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ("server/upstream", "server/jobs", "server/files", "server/money")
MAY_IMPORT_MCP = {
    "server/app.py",
    "server/cli.py",
    "server/demo.py",
    "server/http_transport.py",
    "server/http_sessions.py",
}
MAY_IMPORT_TOOLS = {"server/app.py", "server/cli.py"}
# Who may import the composition root: the command line, which starts it.
MAY_IMPORT_ROOT = {"server/cli.py"}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions (type-checking imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _top(name: str) -> str:
    return name.split(".")[0]


def _server_files() -> list[Path]:
    return sorted((ROOT / "server").rglob("*.py"))


def _python_files() -> list[Path]:
    return sorted(path for folder in ("server", "tools") for path in (ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", _server_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_server_modules_keep_to_their_layer(path: Path) -> None:
    relative = str(path.relative_to(ROOT))
    imported = imported_modules(path)
    tops = {_top(name) for name in imported}
    if relative not in MAY_IMPORT_MCP:
        assert not tops & {"mcp", "mcp_types"}, f"{relative} imports the MCP SDK"
    if relative not in MAY_IMPORT_TOOLS:
        assert "tools" not in tops, f"{relative} imports tools/"
    if relative.startswith(CORE):
        assert not any(name.startswith("server.sandbox") for name in imported), f"{relative} imports the sandbox"
        outer = {name for name in imported if name.startswith(("server.app", "server.cli", "server.demo"))}
        assert not outer, f"{relative} imports the process shell: {outer}"


@pytest.mark.parametrize("path", _python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_imports_the_composition_root_back(path: Path) -> None:
    relative = str(path.relative_to(ROOT))
    if relative not in MAY_IMPORT_ROOT:
        assert "server.app" not in imported_modules(path), f"{relative} imports server.app; use server.runtime"


def test_runtime_sits_below_the_root_and_the_tools() -> None:
    tops = {name for name in imported_modules(ROOT / "server/runtime.py") if name.startswith(("server.app", "tools"))}
    assert not tops and not {"mcp", "mcp_types"} & {_top(n) for n in imported_modules(ROOT / "server/runtime.py")}


def test_the_rules_see_imports_inside_functions(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from mcp.server import Server\n    import tools.follow\n")
    assert imported_modules(sample) == {"mcp.server", "tools.follow"}


def test_every_concern_has_its_package() -> None:
    for package in (*CORE, "server/sandbox", "tools/catalog"):
        assert (ROOT / package / "__init__.py").exists(), package
    # what was spread over server/ and tools/ lives in one home now
    for gone in ("server/ledger.py", "server/upstream.py", "tools/records.py", "tools/media.py"):
        assert not (ROOT / gone).exists(), gone

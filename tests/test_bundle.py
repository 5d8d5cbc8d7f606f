"""The Claude Desktop bundle as a user gets it: built by `scripts/build_bundle.py` (repeatably, leaving the tree
clean, holding the source and nothing else), accepted by `mcpb validate`, and, unpacked, started the way an MCPB
host starts it (`uv run ...` with the command, arguments and environment the host resolves from the manifest) on a
CPython minor version other than the one running these tests, answering the MCP handshake and listing its tools.

Needs git, uv (`pip install ".[bundle]"`), another CPython 3.11+ and npx; without one of them the tests that need it
are skipped, unless FAL_MCP_REQUIRE_BUNDLE=1 (set by .ci/run), which makes a missing one a failure. The host start
installs the locked dependencies from PyPI into uv's cache the first time (about 15 MB); later runs reuse it.
FAL_MCP_BUNDLE_PYTHON names the other CPython to use.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import INITIALIZED, SEED_INPUT, SEED_MODEL, initialize_request
from tests.processes import Process

ROOT = Path(__file__).resolve().parents[1]
BUILD = [sys.executable, str(ROOT / "scripts" / "build_bundle.py")]
REQUIRED = os.environ.get("FAL_MCP_REQUIRE_BUNDLE") == "1"
MCPB = "@anthropic-ai/mcpb@2.1.2"
pytestmark = pytest.mark.xdist_group("bundle")  # pytest -n: one worker builds and unpacks the bundle once
FIRST_START_SECONDS = 600  # a cold uv cache downloads the wheels; a warm one starts in seconds
# What the host's environment would carry on the user's machine (a proxy, its certificates, a package index).
PASSED_THROUGH = ("SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy")


def need(found: Any, what: str) -> Any:
    if not found:
        if REQUIRED:
            pytest.fail(f"FAL_MCP_REQUIRE_BUNDLE=1 but {what}")
        pytest.skip(what)
    return found


def find_uv() -> str:
    beside = shutil.which("uv", path=str(Path(sys.executable).parent))
    return str(need(beside or shutil.which("uv"), 'uv is not installed (pip install ".[bundle]")'))


def other_cpython() -> str:
    """A CPython 3.11+ of another minor version than this one (pyenv shims for inactive versions do not run)."""
    candidates = [os.environ["FAL_MCP_BUNDLE_PYTHON"]] if os.environ.get("FAL_MCP_BUNDLE_PYTHON") else []
    for minor in (13, 12, 14, 11):
        name = f"python3.{minor}"
        candidates += [str(p) for p in sorted(Path.home().glob(f".pyenv/versions/3.{minor}.*/bin/{name}"))[::-1]]
        candidates += [found for found in [shutil.which(name)] if found]
        candidates += [f"{prefix}/bin/{name}" for prefix in ("/usr", "/usr/local", "/opt/homebrew")]
    probe = "import sys; print(sys.implementation.name, *sys.version_info[:2])"
    for candidate in dict.fromkeys(candidates):
        if not Path(candidate).is_file():
            continue
        done = subprocess.run([candidate, "-c", probe], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            continue
        implementation, major, minor_text = done.stdout.split()
        version = (int(major), int(minor_text))
        if implementation == "cpython" and version >= (3, 11) and version != sys.version_info[:2]:
            return candidate
    return str(need(None, f"no CPython 3.11+ other than {sys.version_info[0]}.{sys.version_info[1]} found"))


def build(out_dir: Path) -> Path:
    need(shutil.which("git") and (ROOT / ".git").exists(), "not a git checkout")
    command = [*BUILD, "--worktree", "--out-dir", str(out_dir)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (bundle,) = out_dir.glob("*.mcpb")
    return bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("build"))


def resolve_mcp_config(folder: Path, user_config: dict[str, Any], home: Path) -> dict[str, Any]:
    """The command, arguments and environment an MCPB host runs, resolved as @anthropic-ai/mcpb 2.1.2's
    getMcpConfigForManifest does (cross-checked against it below): the platform's override replaces command, args
    or env as a whole; each ${...} known to the host is replaced, an unknown one is left as it is."""
    manifest = json.loads((folder / "manifest.json").read_text())
    base = manifest["server"]["mcp_config"]
    config = {"command": base["command"], "args": base.get("args", []), "env": base.get("env", {})}
    config |= {k: v for k, v in base.get("platform_overrides", {}).get(sys.platform, {}).items() if v}
    variables = {"__dirname": str(folder), "pathSeparator": os.sep, "/": os.sep, "HOME": str(home)}
    variables |= {name.upper(): str(home / name) for name in ("Desktop", "Documents", "Downloads")}
    options = manifest.get("user_config", {})
    values = {name: option["default"] for name, option in options.items() if "default" in option} | user_config
    for name, value in values.items():
        variables[f"user_config.{name}"] = ("true" if value else "false") if isinstance(value, bool) else str(value)

    def fill(text: str) -> str:
        for name, value in variables.items():
            text = text.replace("${" + name + "}", value)
        return text

    return {
        "command": fill(config["command"]),
        "args": [fill(arg) for arg in config["args"]],
        "env": {name: fill(value) for name, value in config["env"].items()},
    }


# ---- the build ---------------------------------------------------------------------------------------------------


def test_bundle_holds_the_source_and_nothing_else(bundle: Path) -> None:
    with zipfile.ZipFile(bundle) as archive:
        names = set(archive.namelist())
        contents = b"".join(archive.read(name) for name in names)
    tracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard", "server", "tools"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    expected = {"manifest.json", "icon.png", "pyproject.toml", "uv.lock", "README.md", "LICENSE"}
    assert names == expected | {name for name in tracked if (ROOT / name).is_file()}
    assert "tools/catalog/featured_inputs.json" in names  # package data too
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".so")) or ".egg-info" in n]
    assert not [n for n in names if n.startswith((".venv", "bundle/", "build/", "dist/"))]
    # no path of the machine that built it
    for builder_path in {str(ROOT), str(bundle.parent), str(Path.home())}:
        assert builder_path.encode() not in contents, builder_path


def test_build_runs_twice_to_the_same_bytes_and_leaves_the_tree_clean(bundle: Path, tmp_path: Path) -> None:
    status = ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=all"]
    before = subprocess.run(status, capture_output=True, text=True, check=True).stdout
    first = hashlib.sha256(build(tmp_path).read_bytes()).hexdigest()
    second = hashlib.sha256(build(tmp_path).read_bytes()).hexdigest()  # over the first one's output
    assert first == second == hashlib.sha256(bundle.read_bytes()).hexdigest()
    assert subprocess.run(status, capture_output=True, text=True, check=True).stdout == before
    # its default output, in the repository, is ignored by git
    outputs = ["bundle/manifest.json", bundle.name]
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", *outputs], capture_output=True, text=True)
    assert ignored.stdout.split() == outputs


def test_uv_lock_matches_pyproject() -> None:
    """`uv run --frozen` installs uv.lock as it is. After changing dependencies: `uv lock`, and commit uv.lock."""
    command = [find_uv(), "lock", "--check", "--offline", "--directory", str(ROOT), "--python", sys.executable]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"})
    assert done.returncode == 0, f"uv.lock is out of date: run `uv lock` and commit it\n{done.stderr}"


# ---- the reference tools: mcpb validate, and the host's own resolution ------------------------------------------


def npx(command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`command` run with the mcpb package at hand (downloaded by npx into its cache the first time)."""
    executable = need(shutil.which("npx"), "npx (Node.js) is not installed")
    done = subprocess.run(
        [executable, "-y", "-p", MCPB, "-c", command], capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0 and "npm error" in done.stderr and not REQUIRED:
        pytest.skip(f"npx could not get {MCPB}: {done.stderr.strip()[-300:]}")
    return done


@pytest.fixture(scope="module")
def unpacked(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundle unpacked as a host installs it (a folder with a space in its name, like "Application Support")."""
    folder = tmp_path_factory.mktemp("host") / "Claude Extensions" / "fal-queue-mcp"
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(folder)
    return folder


def test_mcpb_validate_accepts_the_bundle_manifest(unpacked: Path) -> None:
    done = npx(f"mcpb validate {shlex.quote(str(unpacked / 'manifest.json'))}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Manifest schema validation passes" in done.stdout


@pytest.mark.parametrize("user_config", [{}, {"uniapi_key": "sk-test", "max_wait_seconds": 30, "provider": "fal"}])
def test_the_host_resolves_the_config_as_this_test_does(unpacked: Path, user_config: dict[str, Any]) -> None:
    script = shlex.join(["node", str(ROOT / "tests" / "mcpb_host_config.mjs"), str(unpacked), json.dumps(user_config)])
    done = npx(script)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == resolve_mcp_config(unpacked, user_config, Path.home())


# ---- the host starts it ------------------------------------------------------------------------------------------


@pytest.fixture
def host_session(unpacked: Path, tmp_path: Path) -> Iterator[tuple[Process, str]]:
    uv, python = find_uv(), other_cpython()
    home = tmp_path / "home"
    home.mkdir()
    config = resolve_mcp_config(unpacked, {}, home)
    cache = subprocess.run([uv, "cache", "dir"], capture_output=True, text=True, check=True).stdout.strip()
    env = {
        "HOME": str(home),
        "PATH": os.pathsep.join([str(Path(uv).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        "LANG": "C.UTF-8",
        # test-only: the other CPython, never a download; the user's uv cache, so only a first run downloads wheels
        "UV_PYTHON": python,
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_CACHE_DIR": cache,
    }
    env |= {name: value for name, value in os.environ.items() if name in PASSED_THROUGH or name.startswith("UV_INDEX")}
    env |= config["env"]
    process = Process([config["command"], *config["args"]], env, cwd=home)
    try:
        yield process, python
    finally:
        process.close()


def test_the_unpacked_bundle_starts_as_the_host_runs_it_on_another_cpython(
    host_session: tuple[Process, str], unpacked: Path
) -> None:
    process, python = host_session
    manifest = json.loads((unpacked / "manifest.json").read_text())
    process.send(initialize_request("mcpb-host"))
    info = process.answer(1, timeout=FIRST_START_SECONDS)["result"]["serverInfo"]
    assert info["version"] == manifest["version"]
    process.send(INITIALIZED)
    process.send({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    tools = {tool["name"] for tool in process.answer(2)["result"]["tools"]}
    assert tools == {tool["name"] for tool in manifest["tools"]}
    process.send({"jsonrpc": "2.0", "id": 3, "method": "prompts/list"})
    assert [p["name"] for p in process.answer(3)["result"]["prompts"]] == [p["name"] for p in manifest["prompts"]]
    # every optional setting left empty: no key, and the answer says where the bundle's settings are
    call = {"name": "submit_fal_job", "arguments": {"model": SEED_MODEL, "input": SEED_INPUT}}
    process.send({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": call})
    answer = process.answer(4)["result"]
    assert answer["isError"] and "UNIAPI_KEY" in answer["content"][0]["text"]
    assert "extension's settings" in answer["content"][0]["text"]
    # the environment uv made is the other CPython's, and the server ran from it
    venv = (unpacked / ".venv" / "pyvenv.cfg").read_text()
    probe = [python, "-c", "import sys; print(*sys.version_info[:2], sep='.')"]
    wanted = subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip()
    assert f"version_info = {wanted}." in venv
    assert wanted != f"{sys.version_info[0]}.{sys.version_info[1]}"

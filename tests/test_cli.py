"""The command line as a person meets it: --help and --version, what it says when started in a terminal, Ctrl-C in
every mode, a bad setting answered by every call instead of a dead process, and a user's own `server.py` or
`tools/` in the current folder that must not hide the installed server."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.cli import main
from server.settings import ENV_NAMES, Settings
from tests.helpers import INITIALIZED, SEED_INPUT, SEED_MODEL, clean_env, connect, initialize_request
from tests.processes import Process

ROOT = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_help_names_the_keys_and_the_main_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for variable in ("UNIAPI_KEY", "FAL_KEY", "FAL_MCP_PROVIDER", "FAL_MCP_DOWNLOAD_DIR", "FAL_MCP_FILE_ROOTS"):
        assert variable in text
    named = set(re.findall(r"\b(?:FAL|UNIAPI)_[A-Z_]+\b", text))
    assert named <= set(ENV_NAMES.values()), named - set(ENV_NAMES.values())
    assert "demo" in text and "--sandbox" in text and "claude mcp add" in text
    assert f"(default: {Settings.model_fields['max_wait_seconds'].default:g})" in text


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"fal-queue-mcp {VERSION}"


# ---- a real process: a terminal, Ctrl-C ---------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return clean_env(UNIAPI_KEY="not-a-real-key", FAL_MCP_STATE_DIR=str(tmp_path / "state"))


@pytest.fixture
def spawn() -> Iterator[Any]:
    started: list[Process] = []

    def start(args: list[str], env: dict[str, str], **options: Any) -> Process:
        process = Process([sys.executable, "-m", "server", *args], env, **options)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


@pytest.mark.parametrize("sandbox", [False, True], ids=["stdio", "stdio-sandbox"])
def test_in_a_terminal_it_says_what_it_waits_for_and_ctrl_c_ends_it(spawn, env, sandbox: bool) -> None:
    process = spawn(["--sandbox"] if sandbox else [], env, tty=True)
    process.wait_stderr(r"waiting for an MCP client on stdio")
    process.wait_stderr(r"Ctrl-C")
    if sandbox:
        process.wait_stderr(r"sandbox upstream .* serves at http://127\.0\.0\.1:\d+")
    process.send(initialize_request("terminal"))  # serving, not only announcing
    assert process.answer(1)["result"]["serverInfo"]["version"] == VERSION
    assert process.interrupt() == 130


def test_a_sandbox_start_leaves_nothing_in_the_temp_folder(spawn, env, tmp_path: Path) -> None:
    """Each `--sandbox` start used to leave a ledger folder in the temp folder; its state is kept in the state
    folder now (FAL_MCP_STATE_DIR here), and the temp folder is as it was before the start."""
    temp = tmp_path / "temp"
    temp.mkdir()
    process = spawn(["--sandbox"], env | {"TMPDIR": str(temp)})
    process.send(initialize_request("temp"))
    process.answer(1)
    assert process.interrupt() == 130
    assert sorted(temp.iterdir()) == []
    assert (tmp_path / "state" / "sandbox" / "jobs.sqlite3").exists()


def test_ctrl_c_ends_a_client_session_and_no_banner_goes_to_a_client(spawn, env) -> None:
    process = spawn([], env)
    process.send(initialize_request("client"))
    process.answer(1)
    assert process.interrupt() == 130
    process.close()
    assert "waiting for an MCP client" not in "".join(process.err_text)


def test_http_mode_prints_its_url_and_ctrl_c_ends_it_with_a_stream_open(spawn, env) -> None:
    # with sessions (a GET stream needs one; stateless HTTP answers GET with 405)
    process = spawn(["--transport", "http", "--port", "0"], env | {"FAL_MCP_HTTP_STATELESS": "false"}, tty=True)
    url = process.wait_stderr(r"serves MCP at (http://127\.0\.0\.1:\d+/mcp)")[1]
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    opened = httpx.post(url, json=initialize_request("http"), headers=headers, timeout=30)
    assert opened.status_code == 200
    session = {**headers, "mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
    httpx.post(url, json=INITIALIZED, headers=session, timeout=30)
    streaming = threading.Event()

    def hold_the_stream() -> None:  # a client's GET stream, open for its whole session
        with contextlib.suppress(httpx.HTTPError), httpx.stream("GET", url, headers=session, timeout=60) as stream:
            streaming.set()
            for _ in stream.iter_bytes():
                pass

    threading.Thread(target=hold_the_stream, daemon=True).start()
    assert streaming.wait(30)
    assert process.interrupt() == 130


# ---- a bad setting: the server starts, lists its tools, and every call says what to fix -------------------------


def _session(process: Process) -> list[str]:
    process.send(initialize_request("config"))
    process.answer(1)
    process.send(INITIALIZED)
    process.send({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    tools = [tool["name"] for tool in process.answer(2)["result"]["tools"]]
    texts = []
    for request_id, (name, arguments) in enumerate(
        [("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT}), ("list_fal_models", {})], start=3
    ):
        params = {"name": name, "arguments": arguments}
        process.send({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params})
        result = process.answer(request_id)["result"]
        assert result["isError"] is True
        texts.append(result["content"][0]["text"])
    return tools + texts


@pytest.mark.parametrize("port", ["-1", "65536", "http"])
def test_a_bad_port_is_a_usage_error_not_a_traceback(env: dict[str, str], port: str) -> None:
    command = [sys.executable, "-m", "server", "--transport", "http", "--port", port]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "--port" in done.stderr and "not a port" in done.stderr


def test_a_port_in_use_is_reported_not_a_traceback(env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        command = [sys.executable, "-m", "server", "--transport", "http", "--port", port]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"cannot listen on 127.0.0.1 port {port}" in done.stderr


def test_a_bad_setting_is_answered_by_every_call(spawn, env) -> None:
    process = spawn([], env | {"FAL_MCP_SUBMIT_TIMEOUT": "soon"})
    *tools, submit_text, list_text = _session(process)
    assert len(tools) == 8 and "submit_fal_job" in tools
    for text in (submit_text, list_text):
        assert "FAL_MCP_SUBMIT_TIMEOUT" in text and "'soon'" in text
        assert "claude mcp add" in text and "export" in text and "extension's settings" in text
    process.wait_stderr(r"FAL_MCP_SUBMIT_TIMEOUT")  # and the client's log says it too


def test_an_unknown_provider_is_named_as_such(spawn, env) -> None:
    process = spawn([], env | {"FAL_MCP_PROVIDER": "falai"})
    *_, submit_text, _ = _session(process)
    assert "FAL_MCP_PROVIDER" in submit_text and "'falai'" in submit_text
    assert "FAL_MCP_BASE_URL" not in submit_text


def test_an_unusable_ledger_is_answered_by_every_call(spawn, env, tmp_path: Path) -> None:
    state = tmp_path / "broken-state"
    state.mkdir()
    ledger = state / "jobs.sqlite3"
    ledger.write_bytes(b"this is not a SQLite database, and must stay as it is")
    process = spawn([], env | {"FAL_MCP_STATE_DIR": str(state)})
    *_, submit_text, _ = _session(process)
    assert str(ledger) in submit_text and "unreadable" in submit_text
    assert ledger.read_bytes() == b"this is not a SQLite database, and must stay as it is"


@pytest.mark.anyio
async def test_no_key_names_every_way_of_setting_it(sandbox) -> None:
    from tests.helpers import make_settings, text_of

    async with connect(make_settings(sandbox, provider="uniapi", fal_key=None)) as client:
        answer = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
    text = text_of(answer)
    assert answer.is_error
    for place in ("UNIAPI_KEY", "FAL_KEY", '"env"', "claude_desktop_config.json", "extension's settings"):
        assert place in text
    assert "claude mcp add" in text and "--env" in text and "export" in text


# ---- the current folder never shadows the server ------------------------------------------------------------------


@pytest.fixture
def shadowing_folder(tmp_path: Path) -> Path:
    """A folder of the user's own with a `server.py` and a `tools/` package: either would break `python -m server`."""
    folder = tmp_path / "my project"
    (folder / "tools").mkdir(parents=True)
    (folder / "server.py").write_text("raise SystemExit('the user own server.py was imported')\n")
    (folder / "tools" / "__init__.py").write_text("raise ImportError('the user own tools/ was imported')\n")
    return folder


def _console_script() -> str:
    script = shutil.which("fal-queue-mcp", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the fal-queue-mcp console script is not installed beside this Python")
    return script


def test_the_folder_really_shadows_python_m_server(shadowing_folder: Path) -> None:
    """The control: without -P, the user's server.py wins."""
    done = subprocess.run(
        [sys.executable, "-m", "server", "--version"], cwd=shadowing_folder, capture_output=True, timeout=60
    )
    assert b"the user own server.py was imported" in done.stderr


@pytest.mark.parametrize("how", ["console script", "python -P", "entry point by path"])
def test_the_server_starts_from_a_shadowing_folder(shadowing_folder: Path, how: str) -> None:
    command = {
        "console script": lambda: [_console_script()],
        "python -P": lambda: [sys.executable, "-P", "-m", "server"],
        "entry point by path": lambda: [sys.executable, str(ROOT / "server" / "__main__.py")],
    }[how]()
    done = subprocess.run(
        [*command, "--version"], cwd=shadowing_folder, capture_output=True, timeout=60, env=clean_env()
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().strip() == f"fal-queue-mcp {VERSION}"


def test_demo_runs_from_a_shadowing_folder_and_saves_the_video(shadowing_folder: Path, tmp_path: Path) -> None:
    downloads = tmp_path / "downloads"
    variables = {"FAL_MCP_DOWNLOAD_DIR": str(downloads), "FAL_MCP_STATE_DIR": str(tmp_path / "state")}
    env = {k: v for k, v in clean_env(**variables).items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [_console_script(), "demo"], cwd=shadowing_folder, capture_output=True, timeout=120, env=env,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    out = done.stdout.decode()
    # one tool per line, with its title
    assert re.search(r"^  submit_fal_job +Submit a fal generation job$", out, re.MULTILINE)
    assert "IN_QUEUE" in out and "-> COMPLETED" in out
    # the sandbox prices its models: an estimate at submit, then the bill the result fetch told (5.008 s x $0.05)
    assert "   estimate: $0.25 (5 seconds at $0.05 a second; fal pricing API)\n" in out, out
    assert "   cost: $0.2504 (billed;" in out, out
    # progress lines while it waited (which phases a poll lands in depends on how busy the machine is)
    assert re.search(r"^   (Queued|Running)\b", out, re.MULTILINE), out
    fal_part, native_part = out.split("3. submit_fal_job  model=kling/v1/videos/text2video\n")
    # beside the fal job, one on UniAPI's native Kling route: submitted, waited for, its video shown and saved
    assert "-> COMPLETED" in fal_part and "-> COMPLETED" in native_part, out
    assert "4. get_fal_result  wait_seconds=30 download=true" in native_part, out
    assert re.search(r'"url": "http://127\.0\.0\.1:\d+/files/\d+/output\.mp4"', native_part), out
    assert "   estimate: none (no price is known for this model; FAL_MCP_PRICES can give one)\n" in native_part
    saved = [Path(path) for path in re.findall(r"saved: (.+?) \(\d+ bytes", out)]
    assert len(saved) == 2 and "saved: " in native_part, out
    for path in saved:
        assert path.parent == downloads and path.read_bytes()[4:8] == b"ftyp"  # an MP4 file, kept after the demo
    assert f"It saves the small sample videos it makes in {downloads} " in out.splitlines()[1]  # said first
    assert "claude mcp add fal-queue" in out.splitlines()[-2]


def test_the_demo_names_the_folder_the_server_saves_in(monkeypatch) -> None:
    from types import SimpleNamespace

    from server.demo import download_folder
    from tools.saving import download_dir

    monkeypatch.delenv("FAL_MCP_DOWNLOAD_DIR", raising=False)
    assert download_folder() == download_dir(SimpleNamespace(settings=SimpleNamespace(download_dir=None)))


def _demo(tmp_path: Path, **popen: Any) -> subprocess.Popen[bytes]:
    """`fal-queue-mcp demo` with its output piped, its folders in `tmp_path`."""
    variables = {"FAL_MCP_DOWNLOAD_DIR": str(tmp_path / "downloads"), "FAL_MCP_STATE_DIR": str(tmp_path / "state")}
    return subprocess.Popen(
        [sys.executable, "-m", "server", "demo"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(**variables),
        **popen,
    )


def test_ctrl_c_during_the_demo_ends_it_quietly(tmp_path: Path) -> None:
    """Ctrl-C in a terminal goes to the foreground process group: the demo's. It ends the demo, which ends its
    server, mid-wait, and nothing but "demo interrupted" reaches the terminal (the server's stderr is the demo's:
    reading it to its end waits for the server too)."""
    demo = _demo(tmp_path, start_new_session=True)  # a process group of its own, as a shell gives a command
    assert demo.stdout is not None
    try:
        shown = []
        for line in demo.stdout:
            shown.append(line.decode())
            if line.startswith(b"2. get_fal_result"):
                break  # the wait has started
        assert shown and shown[-1].startswith("2. get_fal_result"), "".join(shown)
        os.killpg(demo.pid, signal.SIGINT)
        _, err = demo.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(demo.pid, signal.SIGKILL)
        demo.wait()
    text = err.decode(errors="replace")
    assert "Traceback" not in text and "Error" not in text, text[-3000:]
    assert text.strip() == "demo interrupted", text[-3000:]
    assert demo.returncode == 130


def test_the_demo_read_through_head_ends_quietly(tmp_path: Path) -> None:
    """`fal-queue-mcp demo | head -1`: the reader of the demo's output leaves after one line. The demo's next line
    finds no reader: it stops there, exit 0, nothing on stderr."""
    demo = _demo(tmp_path)
    assert demo.stdout is not None and demo.stderr is not None
    try:
        assert demo.stdout.readline().startswith(b"fal-queue-mcp demo:")
        demo.stdout.close()
        err = demo.stderr.read().decode(errors="replace")  # to its end: the demo's server writes here too
        code = demo.wait(timeout=60)
    finally:
        demo.kill()
        demo.wait()
    assert err == "" and code == 0, err[-3000:]

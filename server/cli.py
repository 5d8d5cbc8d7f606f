"""Command line: `fal-queue-mcp` serves MCP over stdio (or `--transport http`); `--sandbox` serves against the
local sandbox upstream; `fal-queue-mcp demo` runs a scripted client session against `--sandbox`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, cast

from server import __version__
from server.startup import StartupGC

if TYPE_CHECKING:
    import anyio
    from mcp.server.mcpserver import MCPServer

    from server.runtime import Runtime
    from server.sandbox import Sandbox
    from server.settings import Settings, SettingsError

# This module stays light to import: `main` keeps the garbage collector out of the start before anything heavy
# (pydantic, the SDK) is imported (see server/startup.py).

DESCRIPTION = """\
An MCP server that launches and tracks fal.ai video and image jobs, through UniAPI or fal directly.
MCP clients (Claude Desktop, Claude Code, Cursor, ...) start it and talk to it on stdin/stdout."""

# Only the variables a user is likely to set; README "Configuration" has all of them (a test checks the names).
EPILOG = """\
keys (environment variables; set one):
  UNIAPI_KEY                your UniAPI token: jobs go through api.uniapi.io
  FAL_KEY                   your fal key: jobs go to fal directly (also uploads local files to fal storage)

main settings (every one: README, "Configuration"):
  FAL_MCP_PROVIDER          uniapi or fal (default: from the key that is set)
  FAL_MCP_FILE_ROOTS        folders local files may be read from (default: your home folder; none when
                            --host is beyond loopback)
  FAL_MCP_DOWNLOAD_DIR      where download=true saves media files (default: ~/Downloads/fal-queue-mcp)
  FAL_MCP_STATE_DIR         where the job ledger lives (default: your user state folder)
  FAL_MCP_MAX_WAIT_SECONDS  the longest one get_fal_result call waits (default: 50)
  FAL_MCP_LOG_LEVEL         DEBUG, INFO, WARNING (default) or ERROR; logs go to stderr
  FAL_MCP_HTTP_TOKEN        bearer token HTTP clients must send (required to listen beyond 127.0.0.1)

examples:
  fal-queue-mcp demo                 a scripted session against the sandbox (no key, no network, no cost)
  fal-queue-mcp --sandbox            serve MCP on stdio against the sandbox
  fal-queue-mcp --transport http     serve MCP over HTTP at http://127.0.0.1:8000/mcp
  claude mcp add fal-queue --env UNIAPI_KEY=<token> -- fal-queue-mcp
"""

# Ctrl-C: the normal shutdown gets this long, then the process ends regardless (see `_stop_promptly_on_ctrl_c`).
SHUTDOWN_GRACE_SECONDS = 0.5
INTERRUPTED = 130  # the shell's code for "ended by SIGINT"
# --sandbox keeps its ledger and its upstream's jobs in this folder of the state folder (see `sandbox_state_dir`)
SANDBOX_FOLDER = "sandbox"
SANDBOX_JOBS_FOLDER = "upstream-jobs"
LOOPBACK = "http://127.0.0.1"  # a base URL that is never used: the state folder is all that is read first


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fal-queue-mcp",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["serve", "demo"],
        default="serve",
        help="serve (default): MCP over stdio or HTTP; demo: a scripted session against the sandbox",
    )
    parser.add_argument(
        "--sandbox",
        action="store_true",
        help="serve against a local sandbox upstream on 127.0.0.1 (no key, no network, no cost)",
    )
    parser.add_argument("--sandbox-queue-seconds", type=float, default=1.0, help="sandbox: time a job stays queued")
    parser.add_argument("--sandbox-run-seconds", type=float, default=4.0, help="sandbox: time a job runs")
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio", help="how clients connect")
    parser.add_argument("--host", default="127.0.0.1", help="http: address to bind (non-loopback needs a token)")
    parser.add_argument("--port", type=_port, default=8000, help="http: port to listen on (0: any free port)")
    parser.add_argument("--version", action="version", version=f"fal-queue-mcp {__version__}")
    return parser


def _port(text: str) -> int:
    """A TCP port for --port: a bad one is a usage error, not a traceback from bind()."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: give a number from 1 to 65535 (0: any free one)")
    return port


def main(argv: Sequence[str] | None = None) -> int:
    startup = StartupGC()
    startup.pause()
    try:
        return _main(argv, startup)
    finally:
        startup.restore()


def _main(argv: Sequence[str] | None, startup: StartupGC) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        startup.restore()
        from server.demo import run_demo

        return run_demo()
    from server.settings import Settings, SettingsError

    # stdout belongs to JSON-RPC: every log line goes to stderr.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sandbox: Sandbox | None = None
    config_error: str | None = None
    try:
        if args.sandbox:
            state = sandbox_state_dir(Settings.from_env(provider="fal", base_url=LOOPBACK).state_dir)
            sandbox = _start_sandbox(args, state)
            settings = sandbox_settings(sandbox, state)
        else:
            settings = Settings.from_env()
        _check_ledger(settings)
        if args.transport == "http":
            _check_http(args, settings)
    except (SettingsError, StartupError) as exc:
        if sandbox is not None:
            sandbox.stop()
            sandbox = None
        print(f"fal-queue-mcp: {exc}", file=sys.stderr)
        if args.transport == "http":
            return 2
        # A client that sees the process exit shows only "connection closed": serve instead, list the tools,
        # and answer every call with the error. The defaults below are never used for work.
        config_error = _configuration_error(exc)
        settings = Settings.from_env({}, watch_jobs=False)
        print(
            "fal-queue-mcp: serving anyway; every tool call answers with this error until it is fixed", file=sys.stderr
        )
    logging.getLogger().setLevel(settings.log_level)
    from server import logs

    logs.install(settings.secrets(), settings.log_level)
    # Until serving starts there is nothing to shut down: Ctrl-C ends the process at once.
    signal.signal(signal.SIGINT, lambda signum, frame: _exit_now())
    if args.transport == "stdio" and sys.stdin.isatty():
        _say_what_happens(sandbox)
    try:
        interrupted = _serve(args, settings, config_error, sandbox, startup)
    except StartupError as exc:  # the port is taken, say
        print(f"fal-queue-mcp: {exc}", file=sys.stderr)
        if sandbox is not None:
            sandbox.stop()
        return 2
    if interrupted:
        _exit_now()  # Ctrl-C: see `_until_ctrl_c`
    if sandbox is not None:
        sandbox.stop()
    return 0


class StartupError(Exception):
    pass


def _configuration_error(exc: SettingsError | StartupError) -> str:
    """What every call answers: the problem, and where to fix it (a ledger error already says what to do)."""
    from server.settings import SettingsError, where_to_set

    text = f"fal-queue-mcp cannot work until this is fixed: {str(exc).rstrip('.')}."
    if isinstance(exc, SettingsError) and exc.variables:
        text += " " + where_to_set(", ".join(dict.fromkeys(exc.variables)))
    return text


def sandbox_state_dir(state_dir: Path | None) -> Path:
    """The sandbox's own folder inside the state folder (`state_dir`, default: the user state folder): its ledger
    and its upstream's jobs, apart from the real ledger. It outlives the process on purpose: a client that starts a
    server per call (the MCP Inspector's CLI, LangChain's default client) submits through one `--sandbox` process
    and asks for the result through the next, which must know the job; the sandbox forgets jobs after fal's
    retention."""
    from server.jobs.ledger.sqlite import SqliteLedger

    return SqliteLedger.default_path(state_dir).parent / SANDBOX_FOLDER


def _start_sandbox(args: argparse.Namespace, state_dir: Path) -> Sandbox:
    from server.sandbox import Sandbox, SandboxConfig
    from tools.catalog.sandbox_rules import CatalogRules

    config = SandboxConfig(
        queue_seconds=args.sandbox_queue_seconds,
        run_seconds=args.sandbox_run_seconds,
        jobs_dir=state_dir / SANDBOX_JOBS_FOLDER,
    )
    sandbox = Sandbox(config, CatalogRules())
    sandbox.start()
    return sandbox


def sandbox_settings(sandbox: Sandbox, state_dir: Path) -> Settings:
    """Settings that point everything at the sandbox: its key, its storage, and the sandbox's own ledger in
    `state_dir` (see `sandbox_state_dir`), never the real one."""
    from server.settings import Settings

    return Settings.from_env(
        # as UniAPI, so every route family the sandbox speaks is open (fal queue, Kling, Luma); its key also
        # serves as the fal key its storage takes. No real key is ever used in sandbox mode.
        provider="uniapi",
        base_url=sandbox.base_url,
        uniapi_key=sandbox.config.key,
        fal_key=sandbox.config.key,
        fal_key_id=None,
        fal_key_secret=None,
        storage_token_base=sandbox.base_url,
        storage_upload_base=None,
        state_dir=state_dir,
        database_url=None,  # nor a shared PostgreSQL ledger
    )


def _check_ledger(settings: Settings) -> None:
    """A corrupt or newer ledger is reported at start-up, not at the first call."""
    from server.jobs.ledger import LedgerError
    from server.runtime import open_ledger

    try:
        open_ledger(settings).close()
    except LedgerError as exc:
        raise StartupError(str(exc)) from None


def _check_http(args: argparse.Namespace, settings: Settings) -> None:
    from server.http_transport import HttpConfigError, check_bind

    try:
        check_bind(args.host, settings.http_token.get_secret_value() if settings.http_token else None)
    except HttpConfigError as exc:
        raise StartupError(str(exc)) from None


def _exit_now() -> NoReturn:
    """After Ctrl-C, skip the interpreter's teardown of a large heap (up to a second or two on a busy machine):
    nothing is left to clean up."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(INTERRUPTED)


def _say_what_happens(sandbox: Sandbox | None) -> None:
    """Started by hand in a terminal (stdin is a TTY): a person, not a client, is reading stderr."""
    lines = [
        f"fal-queue-mcp {__version__} is waiting for an MCP client on stdio (stdin/stdout): MCP clients such as",
        "Claude Desktop start it themselves. Press Ctrl-C to stop. To try it by hand: fal-queue-mcp demo",
    ]
    if sandbox is not None:
        lines.append(f"The sandbox upstream (no key, no cost) serves at {sandbox.base_url}")
    print("\n".join(lines), file=sys.stderr, flush=True)


def _serve(
    args: argparse.Namespace,
    settings: Settings,
    config_error: str | None,
    sandbox: Sandbox | None,
    startup: StartupGC,
) -> bool:
    """Serve until the client leaves (stdio) or Ctrl-C; True when Ctrl-C ended it."""
    import anyio

    from server.app import create_server

    # Stateless HTTP keeps no session, so 2025-11-25 resources/subscribe has no channel to push on (2026-07-28
    # listen streams still work): it is neither served nor declared there.
    stateless = args.transport == "http" and settings.http_stateless
    if args.transport == "http":
        from server.http_transport import confine_local_files

        settings = confine_local_files(settings, args.host)
    server = create_server(settings, config_error=config_error, legacy_subscriptions=not stateless)
    startup.serving()
    if args.transport == "stdio":
        return anyio.run(_until_ctrl_c, lambda: _serve_stdio(server))

    from server.http_guard import ConnectionLimits
    from server.http_sessions import SessionLimits
    from server.http_transport import HttpConfigError, serve_http
    from server.runtime import MEDIA_MAX_CONNECTIONS

    def listening(url: str) -> None:
        upstream = f"; the sandbox upstream serves at {sandbox.base_url}" if sandbox is not None else ""
        print(f"fal-queue-mcp {__version__} serves MCP at {url}{upstream}. Press Ctrl-C to stop.", file=sys.stderr)

    limits = ConnectionLimits(
        max_connections=settings.http_max_connections,
        max_pending=settings.http_max_pending,
        request_timeout=settings.http_request_timeout,
        max_request_bytes=settings.http_max_request_bytes,
    )

    unservable: list[str] = []

    async def serve() -> None:
        token = settings.http_token.get_secret_value() if settings.http_token else None
        try:
            await serve_http(
                server,
                host=args.host,
                port=args.port,
                token=token,
                allowed_hosts=settings.http_allowed_hosts,
                limits=limits,
                # the upstream pool and the media downloads hold descriptors of their own
                reserved_descriptors=settings.max_connections + MEDIA_MAX_CONNECTIONS,
                on_listening=listening,
                stateless=stateless,
                sessions=SessionLimits(settings.http_max_sessions, settings.http_session_idle_timeout),
            )
        except HttpConfigError as exc:  # reported after the event loop, not as a task group's traceback
            unservable.append(str(exc))

    interrupted = anyio.run(_until_ctrl_c, serve)
    if unservable:
        raise StartupError(unservable[0])
    return interrupted


async def _serve_stdio(server: MCPServer[Runtime]) -> None:
    """Serve over stdin/stdout with the SDK's stdio transport, its I/O done on the event loop where both are pipes
    (see server/stdio_pipes.py). A write that finds no reader is the client gone (it closed its end, or ended
    without closing our stdin first): that ends serving as end of input does, quietly."""
    from server.stdio_pipes import READER_GONE, stdout_gone

    try:
        await _serve_stdio_until_eof(server)
    except* READER_GONE:
        logging.getLogger(__name__).info("the client closed its end of stdout: stopping")
        stdout_gone()


async def _serve_stdio_until_eof(server: MCPServer[Runtime]) -> None:
    from mcp.server.stdio import stdio_server

    from server.stdio_pipes import claim_pipes

    with claim_pipes() as pipes:
        if pipes is None:
            await server.run_stdio_async()
            return
        # The SDK reads the lines and writes the answers through these; they are typed as anyio files, which
        # they stand in for (only `async for` and `write`/`flush` are used).
        stdin, stdout = cast("anyio.AsyncFile[str]", pipes.reader), cast("anyio.AsyncFile[str]", pipes.writer)
        async with stdio_server(stdin=stdin, stdout=stdout) as (read_stream, write_stream):
            lowlevel = server._lowlevel_server
            await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())


async def _until_ctrl_c(serve: Callable[[], Awaitable[None]]) -> bool:
    """Run `serve` until it returns, or until Ctrl-C cancels it (True). Cancelling lets every task clean up (a
    download in progress removes its partial file). But the SDK's stdio transport reads stdin in a worker thread
    that returns only on input, and shutdown waits for it: so Ctrl-C also starts a timer that ends the process if
    shutdown takes longer. The ledger commits atomically (SQLite), so nothing recorded is lost either way."""
    import anyio

    interrupted = False
    async with anyio.create_task_group() as serving:

        async def on_ctrl_c() -> None:
            nonlocal interrupted
            with anyio.open_signal_receiver(signal.SIGINT) as signals:
                async for _ in signals:
                    interrupted = True
                    deadline = threading.Timer(SHUTDOWN_GRACE_SECONDS, _exit_now)
                    deadline.daemon = True
                    deadline.start()
                    serving.cancel_scope.cancel()
                    return

        if sys.platform != "win32":  # no event-loop signal handlers there: Ctrl-C raises KeyboardInterrupt
            serving.start_soon(on_ctrl_c)
        await serve()
        serving.cancel_scope.cancel()
    return interrupted


if __name__ == "__main__":
    raise SystemExit(main())

"""Command line: `fal-queue-mcp` serves MCP over stdio (or `--transport http`); `--sandbox` serves against the
local sandbox upstream; `fal-queue-mcp demo` runs a scripted client session against `--sandbox`."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from server.settings import Settings, SettingsError

if TYPE_CHECKING:
    from server.sandbox import Sandbox


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fal-queue-mcp", description=__doc__)
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
    parser.add_argument("--port", type=int, default=8000, help="http: port to listen on")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from server.demo import run_demo

        return run_demo()
    # stdout belongs to JSON-RPC: every log line goes to stderr.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sandbox: Sandbox | None = None
    try:
        if args.sandbox:
            sandbox = _start_sandbox(args)
            settings = sandbox_settings(sandbox)
        else:
            settings = Settings.from_env()
        _check_ledger(settings)
        if args.transport == "http":
            _check_http(args, settings)
    except (SettingsError, StartupError) as exc:
        print(f"fal-queue-mcp: {exc}", file=sys.stderr)
        if sandbox is not None:
            sandbox.stop()
        return 2
    logging.getLogger().setLevel(settings.log_level)
    from server import logs

    logs.install(settings.secrets(), settings.log_level)
    try:
        _serve(args, settings)
    except KeyboardInterrupt:
        pass
    finally:
        if sandbox is not None:
            sandbox.stop()
    return 0


class StartupError(Exception):
    pass


def _start_sandbox(args: argparse.Namespace) -> Sandbox:
    from server.sandbox import Sandbox, SandboxConfig
    from tools.catalog.sandbox_rules import CatalogRules

    config = SandboxConfig(queue_seconds=args.sandbox_queue_seconds, run_seconds=args.sandbox_run_seconds)
    sandbox = Sandbox(config, CatalogRules())
    sandbox.start()
    return sandbox


def sandbox_settings(sandbox: Sandbox) -> Settings:
    """Settings that point everything at the sandbox: its key, its storage, and a throwaway ledger."""
    return Settings.from_env(
        provider="fal",
        base_url=sandbox.base_url,
        fal_key=sandbox.config.key,
        fal_key_id=None,
        fal_key_secret=None,
        uniapi_key=None,  # no real key is ever used in sandbox mode
        storage_token_base=sandbox.base_url,
        storage_upload_base=None,
        # sandbox jobs end with the process: keep them out of the real ledger
        state_dir=Path(tempfile.mkdtemp(prefix="fal-queue-mcp-sandbox-")),
    )


def _check_ledger(settings: Settings) -> None:
    """A corrupt or newer ledger is reported at start-up, not at the first call."""
    from server.app import open_ledger
    from server.jobs.ledger import LedgerError

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


def _serve(args: argparse.Namespace, settings: Settings) -> None:
    from server.app import create_server

    server = create_server(settings)
    if args.transport == "stdio":
        server.run("stdio")
        return
    import anyio

    from server.app import MEDIA_MAX_CONNECTIONS
    from server.http_guard import ConnectionLimits
    from server.http_transport import serve_http

    token = settings.http_token.get_secret_value() if settings.http_token else None
    limits = ConnectionLimits(
        max_connections=settings.http_max_connections,
        max_pending=settings.http_max_pending,
        request_timeout=settings.http_request_timeout,
        max_request_bytes=settings.http_max_request_bytes,
    )
    anyio.run(
        lambda: serve_http(
            server,
            host=args.host,
            port=args.port,
            token=token,
            allowed_hosts=settings.http_allowed_hosts,
            limits=limits,
            # the upstream pool and the media downloads hold descriptors of their own
            reserved_descriptors=settings.max_connections + MEDIA_MAX_CONNECTIONS,
            stateless=settings.http_stateless,
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())

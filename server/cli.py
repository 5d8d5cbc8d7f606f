"""Command line: `fal-queue-mcp` serves MCP over stdio; `--sandbox` serves against the local sandbox upstream;
`fal-queue-mcp demo` runs a scripted client session against `--sandbox`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from server.settings import Settings, SettingsError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fal-queue-mcp", description=__doc__)
    parser.add_argument(
        "command",
        nargs="?",
        choices=["serve", "demo"],
        default="serve",
        help="serve (default): MCP over stdio; demo: a scripted session against the sandbox",
    )
    parser.add_argument(
        "--sandbox",
        action="store_true",
        help="serve against a local sandbox upstream on 127.0.0.1 (no key, no network, no cost)",
    )
    parser.add_argument("--sandbox-queue-seconds", type=float, default=1.0, help="sandbox: time a job stays queued")
    parser.add_argument("--sandbox-run-seconds", type=float, default=4.0, help="sandbox: time a job runs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from server.demo import run_demo

        return run_demo()
    # stdout belongs to JSON-RPC: every log line goes to stderr.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sandbox = None
    try:
        if args.sandbox:
            from server.sandbox import Sandbox, SandboxConfig

            sandbox = Sandbox(
                SandboxConfig(queue_seconds=args.sandbox_queue_seconds, run_seconds=args.sandbox_run_seconds)
            )
            sandbox.start()
            settings = Settings.from_env(
                provider="fal",
                base_url=sandbox.base_url,
                fal_key=sandbox.config.key,
                fal_key_id=None,
                fal_key_secret=None,
            )
        else:
            settings = Settings.from_env()
    except SettingsError as exc:
        print(f"fal-queue-mcp: {exc}", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(settings.log_level)
    from server.ledger import LedgerError
    from server.runtime import open_ledger

    try:
        open_ledger(settings).close()  # a corrupt or newer ledger is reported now, not at the first call
    except LedgerError as exc:
        print(f"fal-queue-mcp: {exc}", file=sys.stderr)
        return 2
    from server.app import create_server

    try:
        create_server(settings).run("stdio")
    except KeyboardInterrupt:
        pass
    finally:
        if sandbox is not None:
            sandbox.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

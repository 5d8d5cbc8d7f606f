"""`fal-queue-mcp --sandbox --transport http`, but stateless (no sessions), as tests/test_conformance.py runs it:
`python tests/conformance/serve_stateless.py PORT`. The command line has no switch for stateless HTTP yet."""

from __future__ import annotations

import sys

import uvicorn

from server.app import create_server
from server.cli import sandbox_settings, sandbox_state_dir
from server.http_transport import http_app
from server.sandbox import Sandbox, SandboxConfig
from server.settings import Settings
from tools.catalog.sandbox_rules import CatalogRules

if __name__ == "__main__":
    with Sandbox(SandboxConfig(), CatalogRules()) as sandbox:
        # No session to push on: resources/subscribe is not served (nor declared) at 2025-11-25.
        state = sandbox_state_dir(Settings.from_env(provider="fal", base_url=sandbox.base_url).state_dir)
        server = create_server(sandbox_settings(sandbox, state), legacy_subscriptions=False)
        app = http_app(server, host="127.0.0.1", token=None, stateless=True)
        uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")

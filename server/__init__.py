"""fal-queue-mcp: the server process (settings, upstream client, jobs, MCP assembly, CLI, sandbox)."""

__version__ = "0.1.0"  # the same as pyproject.toml's (tests/test_distribution.py checks it)

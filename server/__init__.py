"""fal-queue-mcp: the server process (settings, upstream client, jobs, MCP assembly, CLI, sandbox)."""

"""Package data: the MCP Apps job view (`job_view.html`), served by `tools.mcp_apps`."""

"""The cold-start baseline: a trivial `MCPServer` with three tools, served over stdio like `python -m server`."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

server = MCPServer("trivial")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def shout(text: str) -> str:
    """Return the text in upper case."""
    return text.upper()


if __name__ == "__main__":
    server.run("stdio")

"""Writes tools/tool_schemas.json: each tool's published input and output schemas, as the SDK derives them from the
tool's signature and its answer model (tools.answers), compacted (see `tools.mcp_tools.published_schemas`).

The server reads them at start-up instead of deriving them again, the largest part of its own start-up work. Run
`python -m tools.tool_schemas` after changing a tool's arguments or an answer model; tests/test_startup.py fails
until then.
"""

from __future__ import annotations

import json

from tools import answers
from tools.mcp_tools import TOOL_SCHEMAS, published_schemas, tool_specs


def render() -> str:
    # Not key-sorted: properties keep their order (the signatures' and the models'), as the SDK publishes them.
    schemas = {fn.__name__: published_schemas(fn, getattr(answers, answer)) for fn, _, _, answer in tool_specs()}
    return json.dumps(schemas, indent=1, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    TOOL_SCHEMAS.write_text(render())
    print(f"wrote {TOOL_SCHEMAS}")

"""Writes tools/catalog/featured_inputs.json, the featured models' input schemas published in submit_fal_job's schema.

Run `python -m tools.catalog.featured` after changing a featured model; tests/test_catalog_tools.py fails until then.
"""

from __future__ import annotations

import json

from tools.catalog.views import featured_input_schema
from tools.mcp_tools import FEATURED_INPUTS


def render() -> str:
    arms, defs = featured_input_schema()
    return json.dumps({"anyOf": arms, "$defs": defs}, indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    FEATURED_INPUTS.write_text(render())
    print(f"wrote {FEATURED_INPUTS}")

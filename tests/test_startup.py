"""What a default start does and does not do: the tools' published schemas come from tools/tool_schemas.json, which
must say exactly what the SDK would derive from the tools' signatures and answer models; and a default stdio start
imports none of the heavy modules that only some calls, transports or backends need."""

from __future__ import annotations

import inspect
import json

import pytest

from tools import answers
from tools.mcp_tools import TOOL_SCHEMAS, tool_specs
from tools.tool_schemas import render


def test_tool_schemas_file_is_what_regenerating_writes() -> None:
    assert TOOL_SCHEMAS.read_text() == render(), "run `python -m tools.tool_schemas` and review the diff"


def test_tool_schemas_file_covers_every_tool_with_its_answer_model() -> None:
    schemas = json.loads(TOOL_SCHEMAS.read_text())
    specs = tool_specs()
    assert list(schemas) == [fn.__name__ for fn, _, _, _ in specs]
    for fn, _, _, answer in specs:
        model = getattr(answers, answer)
        assert set(schemas[fn.__name__]["outputSchema"]["properties"]) == set(model.model_fields), fn.__name__
        arguments = [name for name in inspect.signature(fn).parameters if name != "ctx"]
        assert list(schemas[fn.__name__]["inputSchema"]["properties"]) == arguments, fn.__name__


def test_a_stale_tool_schemas_file_is_noticed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: an answer model that gains a field no longer matches the file."""

    class Widened(answers.StatusAnswer):
        added_later: int = 0

    monkeypatch.setattr(answers, "StatusAnswer", Widened)
    assert TOOL_SCHEMAS.read_text() != render()

"""Correcting an assistant's obvious type slips before an input is judged: 5 where a model wants the text "5".

fal refuses such an input (its enums are strings, and checked strictly), yet the meaning is plain. A slip is
corrected only when exactly one value can be meant: a number whose text is one of a string enum's choices, or a
text spelling a plain number where the field takes a number (one of its choices, when it has a numeric enum).
Anything else (5.0 for "5", "five", a field that takes several types) is left for validation to refuse.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from tools.schema import json_schema

_INTEGER = re.compile(r"-?\d{1,15}")
_DECIMAL = re.compile(r"-?\d{1,15}(\.\d{1,15})?")

Path = tuple[int | str, ...]


def correct_slips(
    params: type[BaseModel], body: dict[str, Any], errors: Sequence[ErrorDetails]
) -> tuple[dict[str, Any], list[str]]:
    """`body` with the slips among `errors` corrected (a copy; `body` itself is untouched), and a note for each."""
    schema = json_schema(params)
    fixes: dict[Path, Any] = {}
    for error in errors:
        path = tuple(error["loc"])
        if path in fixes:
            continue
        field = _field_schema(schema, path)
        found, value = _value_at(body, path)
        if field is None or not found:
            continue
        meant = _meant(field, value)
        if meant is not None:
            fixes[path] = meant
    if not fixes:
        return body, []
    corrected = copy.deepcopy(body)
    notes = []
    for path, meant in fixes.items():
        _, sent = _value_at(body, path)
        _set_at(corrected, path, meant)
        where = ".".join(str(part) for part in path)
        kind = "text" if isinstance(meant, str) else "a number"
        notes.append(f"{where}: you sent {json.dumps(sent)}; sent as {json.dumps(meant)}, as this field takes {kind}.")
    return corrected, notes


def _meant(field: dict[str, Any], value: Any) -> Any:
    """The one value `value` can mean for a field of this schema, or None."""
    choices = field.get("enum")
    if "const" in field:
        choices = [field["const"]]
    if _is_number(value) and isinstance(choices, list) and all(isinstance(c, str) for c in choices):
        text = str(value)
        return text if text in choices else None
    if not isinstance(value, str):
        return None
    if isinstance(choices, list) and choices and all(_is_number(c) for c in choices):
        number = _number(value, integer=all(isinstance(c, int) for c in choices))
        return number if number is not None and number in choices else None
    if field.get("type") == "integer" and choices is None:
        return _number(value, integer=True)
    if field.get("type") == "number" and choices is None:
        return _number(value, integer=False)
    return None


def _number(text: str, *, integer: bool) -> int | float | None:
    if _INTEGER.fullmatch(text):
        return int(text)
    if not integer and _DECIMAL.fullmatch(text):
        return float(text)
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _field_schema(schema: dict[str, Any], path: Path) -> dict[str, Any] | None:
    """The schema of the field at `path`, when it is one plain schema (not a choice of several)."""
    node: dict[str, Any] | None = _plain(schema, schema)
    for part in path:
        if node is None:
            return None
        if isinstance(part, int):
            items = node.get("items")
            node = _plain(schema, items) if isinstance(items, dict) else None
        else:
            properties = node.get("properties")
            sub = properties.get(part) if isinstance(properties, dict) else None
            node = _plain(schema, sub) if isinstance(sub, dict) else None
    return node


def _plain(root: dict[str, Any], node: dict[str, Any]) -> dict[str, Any] | None:
    """`node` with its `$ref` followed and a `null` arm dropped; None when it still offers a choice of schemas."""
    seen = 0
    while True:
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and seen < 8:
            target = root.get("$defs", {}).get(ref.removeprefix("#/$defs/"))
            if not isinstance(target, dict):
                return None
            node, seen = target, seen + 1
            continue
        arms = node.get("anyOf", node.get("oneOf"))
        if arms is None:
            return node
        kept = [arm for arm in arms if arm != {"type": "null"}]
        if len(kept) != 1 or not isinstance(kept[0], dict):
            return None
        node = kept[0]


def _value_at(body: Any, path: Path) -> tuple[bool, Any]:
    node = body
    for part in path:
        in_list = isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node)
        in_object = isinstance(part, str) and isinstance(node, dict) and part in node
        if not (in_list or in_object):
            return False, None
        node = node[part]
    return True, node


def _set_at(body: Any, path: Path, value: Any) -> None:
    node = body
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value

"""Compacting published JSON schemas: every byte of `tools/list` is context an assistant pays for each turn.

Only what the reader gains nothing from is dropped: generated titles, `null` defaults, `additionalProperties:
true` (the JSON Schema default), and the `null` arm of optional fields: an unset field is left out, both in
inputs and in this server's answers (dumped with `exclude_none`). Schemas of fal's own outputs keep their
`null` arms (`drop_null=False`), since fal's answers do carry nulls.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model.model_json_schema()`, generated once per class: a fresh copy, which the caller may change. (Generating
    it costs milliseconds, and list_fal_models needs one per catalogued model.)"""
    schema: dict[str, Any] = json.loads(_json_schema_text(model))
    return schema


@functools.cache
def _json_schema_text(model: type[BaseModel]) -> str:
    return json.dumps(model.model_json_schema())


def compact(schema: Any, *, drop_null: bool = True) -> Any:
    """Return a smaller equivalent-for-the-reader copy of `schema`; property names are never touched."""
    if isinstance(schema, list):
        return [compact(item, drop_null=drop_null) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if drop_null:
        schema = _drop_null_arm(schema)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if (key == "title" and isinstance(value, str)) or (key == "default" and value is None):
            continue
        if key == "additionalProperties" and value is True:
            continue
        if key in ("properties", "$defs") and isinstance(value, dict):
            out[key] = {name: compact(sub, drop_null=drop_null) for name, sub in value.items()}
        else:
            out[key] = compact(value, drop_null=drop_null)
    return out


def without_descriptions(schema: Any, names: frozenset[str] | None = None) -> Any:
    """Drop `description` from the properties in `names` (every property and object when None), recursively."""
    if isinstance(schema, list):
        return [without_descriptions(item, names) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "description" and names is None:
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {
                name: without_descriptions(
                    {k: v for k, v in sub.items() if k != "description"} if names and name in names else sub, names
                )
                for name, sub in value.items()
            }
        else:
            out[key] = without_descriptions(value, names)
    return out


def numeric_enums_as_ranges(schema: Any) -> Any:
    """Replace every enum of numbers with minimum/maximum and the choices in words, recursively.

    Some clients refuse a schema with a non-string enum outright (Gemini: "enum" takes strings only), so a
    published schema says "an integer from 4 to 20, one of 4, 8, 12, 16, 20"; local validation keeps checking
    the exact choices.
    """
    if isinstance(schema, list):
        return [numeric_enums_as_ranges(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: numeric_enums_as_ranges(value) for key, value in schema.items()}
    choices = schema.get("enum")
    if isinstance(choices, list) and choices and all(_is_number(value) for value in choices):
        del out["enum"]
        words = ", ".join(str(value) for value in choices)
        said = schema.get("description")
        out.update(
            minimum=min(choices),
            maximum=max(choices),
            description=f"{said} One of {words}." if said else f"One of {words}.",
        )
    return out


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _drop_null_arm(schema: dict[str, Any]) -> dict[str, Any]:
    options = schema.get("anyOf")
    if not isinstance(options, list):
        return schema
    kept = [option for option in options if option != {"type": "null"}]
    if len(kept) != 1 or len(kept) == len(options):
        return schema if len(kept) == len(options) else {**schema, "anyOf": kept}
    merged = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**kept[0], **merged}


def shared_defs_schema(models: Mapping[str, type[BaseModel]]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """JSON schemas of several models with one shared `$defs` (refs `#/$defs/Name`), keyed like `models`."""
    keys = list(models)
    mapping, top = models_json_schema([(models[key], "validation") for key in keys], ref_template="#/$defs/{model}")
    refs = {key: mapping[(models[key], "validation")] for key in keys}
    return refs, top.get("$defs", {})

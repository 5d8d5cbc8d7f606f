"""Example values derived from a model's JSON schema: minimal valid inputs and sandbox outputs.

Derived, not written by hand, so every catalogued model gets an example that matches its class.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tools.catalog.base import file_inputs
from tools.schema import json_schema

EXAMPLE_IMAGE_URL = "https://storage.googleapis.com/falserverless/kling/kling_input.jpeg"
EXAMPLE_PROMPT = "A red fox trots through fresh snow at sunrise, the camera slowly following it"


def example_input(params: type[BaseModel], image_url: str = EXAMPLE_IMAGE_URL) -> dict[str, Any]:
    """The smallest input the model accepts: its required fields, filled with plausible values.

    A model whose rules reach across fields (Kling: an image or an end frame) states its own in its schema's
    `examples`, and that one is used.
    """
    schema = json_schema(params)
    stated = schema.get("examples")
    if isinstance(stated, list) and stated and isinstance(stated[0], dict):
        return dict(stated[0])
    return _required_object(schema, schema.get("$defs", {}), _input_leaf(image_url, frozenset(file_inputs(params))))


def example_output(output: type[BaseModel], media_url: str, content_type: str) -> dict[str, Any]:
    """An output shaped like the model's: required fields filled, every file pointing at `media_url`."""
    schema = json_schema(output)
    return _required_object(schema, schema.get("$defs", {}), _output_leaf(media_url, content_type))


Leaf = Any  # a callable (name, schema) -> value or _NO_VALUE


class _NoValue:
    pass


_NO_VALUE = _NoValue()


def _input_leaf(image_url: str, file_fields: frozenset[str]) -> Leaf:
    def leaf(name: str, schema: dict[str, Any]) -> Any:
        if name in file_fields or name.endswith(("_url", "_urls")):
            return image_url if schema.get("type") != "array" else [image_url]
        if name in ("prompt", "user_prompt"):
            return EXAMPLE_PROMPT
        return _NO_VALUE

    return leaf


def _output_leaf(media_url: str, content_type: str) -> Leaf:
    def leaf(name: str, schema: dict[str, Any]) -> Any:
        if name == "url":
            return media_url
        if name == "content_type":
            return content_type
        if name == "file_name":
            return media_url.rsplit("/", 1)[-1]
        return _NO_VALUE

    return leaf


def _required_object(schema: dict[str, Any], defs: dict[str, Any], leaf: Leaf) -> dict[str, Any]:
    schema = _resolve(schema, defs)
    properties: dict[str, Any] = schema.get("properties", {})
    wanted = set(schema.get("required", [])) | {"url", "content_type", "file_name"} & set(properties)
    return {name: _value(name, properties[name], defs, leaf) for name in properties if name in wanted}


def _value(name: str, schema: dict[str, Any], defs: dict[str, Any], leaf: Leaf) -> Any:
    schema = _resolve(schema, defs)
    chosen = leaf(name, schema)
    if chosen is not _NO_VALUE:
        return chosen
    if "default" in schema:
        return schema["default"]
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for option in schema.get("anyOf", []):
        if _resolve(option, defs).get("type") != "null":
            return _value(name, option, defs, leaf)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return _required_object(schema, defs, leaf)
    if kind == "array":
        return [_value(name.removesuffix("s"), schema.get("items", {}), defs, leaf)]
    simple: dict[str, Any] = {"string": "example", "integer": schema.get("minimum", 1), "number": 1.0, "boolean": False}
    return simple.get(str(kind))


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        resolved: dict[str, Any] = defs[ref.removeprefix("#/$defs/")]
        return resolved
    return schema

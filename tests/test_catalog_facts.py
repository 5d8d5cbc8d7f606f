"""The catalog against the facts files: every endpoint, field, enum, range and default, as fal publishes them.

The facts (tests/data/fal-models.json, a verbatim copy of the project's shared facts file, and
tests/data/uniapi-native-models.json, UniAPI's native Kling and Luma routes in the same form; both kept in the
repository so that a fresh clone tests without anything beside it) are the source of truth; a parameter model
that drifts from them (a missing field, a wrong enum value or type, a changed default or range) fails here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from tools.catalog import (
    CATALOG,
    FalInput,
    flux,
    kling,
    kling_native,
    luma,
    luma_native,
    minimax,
    pixverse,
    seedance,
    sora,
    veo,
    wan,
)

DATA = Path(__file__).resolve().parent / "data"
FACTS: dict[str, dict[str, Any]] = {
    endpoint_id: facts
    for name in ("fal-models.json", "uniapi-native-models.json")
    for endpoint_id, facts in json.loads((DATA / name).read_text(encoding="utf-8"))["endpoints"].items()
}

# The seed model and one strong model of most families: their schemas ride in submit_fal_job's inputSchema (Seedance
# and PixVerse gave their room in tools/list to the money arguments; describe_fal_model still describes them).
FEATURED = {
    "fal-ai/kling-video/v2.1/standard/image-to-video",
    "fal-ai/veo3.1/fast/image-to-video",
    "fal-ai/minimax/hailuo-02/standard/image-to-video",
    "fal-ai/luma-dream-machine/ray-2/image-to-video",
    "fal-ai/wan-25-preview/image-to-video",
    "fal-ai/sora-2/text-to-video",
    "fal-ai/flux/dev",
}

MAX_DESCRIPTION_WORDS = 8
_RANGE_KEYS = ("minimum", "maximum", "minLength", "maxLength")
_SCALAR_TYPES = {"string", "boolean", "integer", "number", "null"}

Schema = dict[str, Any]


# --- reading a pydantic JSON schema ------------------------------------------------------------------------------


def _resolve(schema: Schema, defs: Schema) -> Schema:
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/$defs/"), ref
        schema = defs[ref.removeprefix("#/$defs/")]
    return schema


def _branches(prop: Schema, defs: Schema) -> list[Schema]:
    """The alternatives a property accepts (anyOf/oneOf flattened, $refs resolved)."""
    prop = _resolve(prop, defs)
    options = prop.get("anyOf") or prop.get("oneOf")
    if not options:
        return [prop]
    return [branch for option in options for branch in _branches(option, defs)]


def _json_type(branch: Schema) -> str:
    if "type" in branch:
        return str(branch["type"])
    if "properties" in branch:
        return "object"
    raise AssertionError(f"schema branch without a type: {branch}")


def _typed(value: Any) -> tuple[str, Any]:
    """A value with its JSON type, so "5" and 5 (or 1 and True) never compare equal."""
    return (json.dumps(value), type(value).__name__)


# --- the checks --------------------------------------------------------------------------------------------------


def _check_object(where: str, facts: dict[str, Schema], schema: Schema, defs: Schema) -> None:
    schema = _resolve(schema, defs)
    props: Schema = schema.get("properties", {})
    assert set(props) == set(facts), f"{where}: fields differ from the facts"
    wanted_required = {name for name, fact in facts.items() if fact.get("required")}
    assert set(schema.get("required", [])) == wanted_required, f"{where}: required fields differ"
    for name, fact in facts.items():
        _check_field(f"{where}.{name}", fact, props[name], defs)


def _check_field(where: str, fact: Schema, prop: Schema, defs: Schema) -> None:
    description = str(prop.get("description") or "").strip()
    assert description, f"{where}: no description"
    assert len(description.split()) <= MAX_DESCRIPTION_WORDS, f"{where}: description too long: {description!r}"

    resolved = _resolve(prop, defs)
    branches = [b for b in _branches(prop, defs) if _json_type(b) != "null"]

    # Default: the facts' value with its JSON type; no default in the facts means optional and None.
    fact_default = fact.get("default")
    if fact.get("required"):
        assert "default" not in resolved, f"{where}: required in the facts, but has a default"
    elif fact_default is not None:
        assert "default" in resolved, f"{where}: the facts give default {fact_default!r}, the model none"
        assert _typed(resolved["default"]) == _typed(fact_default), f"{where}: default differs"
    else:
        assert resolved.get("default", "missing") is None, f"{where}: optional without a default must default to None"

    # Enum: the same values with the same types, order aside.
    schema_enum: list[Any] = []
    for branch in branches:
        schema_enum += branch.get("enum", [])
        if "const" in branch:
            schema_enum.append(branch["const"])
    fact_enum = fact.get("enum") or []
    assert sorted(map(_typed, schema_enum)) == sorted(map(_typed, fact_enum)), f"{where}: enum differs"

    # Ranges and lengths: present exactly when the facts give them.
    for key in _RANGE_KEYS:
        found = [branch[key] for branch in branches if key in branch]
        wanted = [fact[key]] if fact.get(key) is not None else []
        assert list(map(_typed, found)) == list(map(_typed, wanted)), f"{where}: {key} differs"

    _check_type(where, fact, _branches(prop, defs), defs)


def _check_type(where: str, fact: Schema, branches: list[Schema], defs: Schema) -> None:
    kinds = {part.strip() for part in str(fact["type"]).split("|")}
    wanted = {kind.split("<", 1)[0] for kind in kinds}
    if not fact.get("required") and fact.get("default") is None:
        wanted.add("null")
    found = {_json_type(branch) for branch in branches}
    assert found == wanted, f"{where}: type {sorted(found)} but the facts say {fact['type']!r}"
    for branch in branches:
        kind = _json_type(branch)
        if kind == "array":
            item_kind = next(k for k in kinds if k.startswith("array<")).removeprefix("array<").removesuffix(">")
            items = _resolve(branch.get("items", {}), defs)
            if item_kind in _SCALAR_TYPES:
                assert _json_type(items) == item_kind, f"{where}: array items should be {item_kind}"
            else:
                assert "item_properties" in fact, f"{where}: object items but no item facts"
                _check_object(f"{where}[]", fact["item_properties"], items, defs)
        elif kind == "object":
            assert "properties" in fact, f"{where}: object but no property facts"
            _check_object(where, fact["properties"], branch, defs)


# --- the tests ---------------------------------------------------------------------------------------------------

ENDPOINTS = sorted(FACTS)


def test_catalog_holds_exactly_the_facts_endpoints() -> None:
    assert set(CATALOG) == set(FACTS)


@pytest.mark.parametrize("endpoint_id", ENDPOINTS)
def test_parameter_model_matches_facts(endpoint_id: str) -> None:
    facts = FACTS[endpoint_id]
    entry = CATALOG.get(endpoint_id)
    assert entry is not None, f"{endpoint_id} is not catalogued"
    assert entry.endpoint_id == endpoint_id
    assert (entry.family, entry.task) == (facts["family"], facts["task"])
    assert issubclass(entry.params, FalInput)
    assert entry.title.strip()
    schema = entry.params.model_json_schema()
    _check_object(endpoint_id, facts["inputs"], schema, schema.get("$defs", {}))
    # Nested item models are parameter models too: extras allowed, like the top level.
    for name, definition in schema.get("$defs", {}).items():
        assert definition.get("additionalProperties") is True, f"{endpoint_id}: {name} refuses extra fields"


@pytest.mark.parametrize("endpoint_id", ENDPOINTS)
def test_output_model_covers_facts(endpoint_id: str) -> None:
    output = CATALOG[endpoint_id].output
    assert issubclass(output, BaseModel)
    assert output.model_config.get("extra") == "allow"
    schema = output.model_json_schema()
    defs = schema.get("$defs", {})
    props = schema["properties"]
    facts = FACTS[endpoint_id]["output"]
    # Outputs are read leniently, but what fal always sends (required, no default) must be required here too.
    always = {name for name, fact in facts.items() if fact.get("required") and fact.get("default") is None}
    assert always <= set(schema.get("required", [])), f"{endpoint_id}: an always-present output is optional"
    assert set(facts) <= set(props), f"{endpoint_id}: output fields missing: {sorted(set(facts) - set(props))}"
    for name, fact in facts.items():
        # A file's own fields (url, width, ...) must be known, whichever way it is nested.
        file_facts = fact.get("properties") or fact.get("item_properties")
        if not file_facts:
            continue
        file_schemas = [b for b in _branches(props[name], defs) if _json_type(b) != "null"]
        for file_schema in file_schemas:
            if _json_type(file_schema) == "array":
                file_schema = _resolve(file_schema["items"], defs)
            missing = set(file_facts) - set(file_schema.get("properties", {})) - {"file_data"}
            assert not missing, f"{endpoint_id}.{name}: file fields missing: {sorted(missing)}"


def test_every_family_module_is_catalogued_without_duplicates() -> None:
    ids = [
        entry.endpoint_id
        for module in (kling, veo, minimax, luma, wan, seedance, pixverse, sora, flux, kling_native, luma_native)
        for entry in module.ENTRIES
    ]
    assert len(ids) == len(set(ids)) == len(CATALOG)


def test_exactly_the_featured_models_are_featured() -> None:
    assert {endpoint_id for endpoint_id, entry in CATALOG.items() if entry.featured} == FEATURED


def test_each_endpoint_has_its_own_model_and_title() -> None:
    params = [entry.params for entry in CATALOG.values()]
    titles = [entry.title for entry in CATALOG.values()]
    assert len(set(params)) == len(params)
    assert len(set(titles)) == len(titles)


def test_models_are_strict_about_enum_types() -> None:
    kling = CATALOG["fal-ai/kling-video/v2.1/standard/image-to-video"].params
    sora = CATALOG["fal-ai/sora-2/text-to-video"].params
    assert kling.model_validate({"prompt": "p", "image_url": "u", "duration": "10", "new_field": 1})
    assert sora.model_validate({"prompt": "p", "duration": 8})
    with pytest.raises(ValidationError):
        kling.model_validate({"prompt": "p", "image_url": "u", "duration": 10})
    with pytest.raises(ValidationError):
        sora.model_validate({"prompt": "p", "duration": "8"})


def test_nested_items_are_validated() -> None:
    kling3 = CATALOG["fal-ai/kling-video/v3/pro/text-to-video"].params
    assert kling3.model_validate({"multi_prompt": [{"prompt": "a", "duration": "3", "extra": True}]})
    with pytest.raises(ValidationError):
        kling3.model_validate({"multi_prompt": [{"duration": "3"}]})
    flux = CATALOG["fal-ai/flux/dev"].params
    assert flux.model_validate({"prompt": "p", "image_size": {"width": 640, "height": 480}})
    assert flux.model_validate({"prompt": "p", "image_size": "square_hd"})
    with pytest.raises(ValidationError):
        flux.model_validate({"prompt": "p", "image_size": "huge"})

"""Read-only views of the catalog for assistants: list, describe, and the featured input schemas.

All derived from the catalog's classes, so they cannot drift from what validation enforces.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from server.errors import FalError, NotFoundError
from server.jobs.ledger.base import LedgerError
from server.route_family import ROUTE_FAMILIES
from server.upstream.ids import normalize_endpoint_id
from tools.answers import ModelDescription, ModelList, ModelSummary
from tools.catalog import CATALOG, CatalogEntry
from tools.catalog.examples import example_input
from tools.schema import compact, json_schema, numeric_enums_as_ranges, shared_defs_schema, without_descriptions

if TYPE_CHECKING:
    from server.money.prices import Price
    from server.runtime import Runtime

MAX_LISTED = 100
# Fields whose names say it all: their descriptions are left out of the featured schemas (not of describe_fal_model).
SELF_EXPLANATORY = frozenset(
    {
        "prompt",
        "negative_prompt",
        "duration",
        "aspect_ratio",
        "resolution",
        "seed",
        "image_url",
        "num_images",
        "output_format",
        "enable_safety_checker",
        "generate_audio",
        "end_image_url",
    }
)
KEY_FIELDS_SHOWN = 6
# File fields take a local file as well as a URL (tools.uploads); describe_fal_model says so on each of them.
LOCAL_PATH_NOTE = "Or a local file's path (absolute, ~/... or file://); submit_fal_job uploads it."
LOCAL_PATH_LIST_NOTE = "Each may also be a local file's path (absolute, ~/... or file://); submit_fal_job uploads it."
ROUTE_NOTES = {
    "kling": " This is UniAPI's native Kling route: files go in as URLs, local paths or raw base64 (no data: prefix).",
    "luma": " This is UniAPI's native Luma route.",
}


def list_models(task: str | None = None, family: str | None = None, query: str | None = None) -> ModelList:
    """`family` is a model family (kling, luma-ray, ...) or a route family (fal, kling, luma): `fal` lists the
    models reached through the FalAI route, `luma` UniAPI's native Luma routes, `kling` every Kling model."""
    words = (query or "").lower().split()
    wanted_family = (family or "").strip().lower()
    chosen = [
        entry
        for entry in CATALOG.values()
        if (not task or entry.task == task.strip().lower())
        and (not wanted_family or wanted_family in (entry.family, entry.route_family))
        and all(word in f"{entry.endpoint_id} {entry.title} {entry.family} {entry.task}".lower() for word in words)
    ]
    chosen.sort(key=lambda entry: (not entry.featured, entry.family, entry.endpoint_id))
    summaries = [summarize(entry) for entry in chosen[:MAX_LISTED]]
    hint = (
        "Call describe_fal_model(model) for a model's full parameter schema and an example input."
        if summaries
        else f"No model matched. Families: {', '.join(families())}; tasks: {', '.join(tasks())}; "
        f"routes: {', '.join(ROUTE_FAMILIES)}."
    )
    return ModelList(count=len(summaries), models=summaries, next=hint)


def describe_model(model: str) -> ModelDescription:
    endpoint_id = normalize_endpoint_id(model)
    entry = CATALOG.get(endpoint_id)
    if entry is None:
        raise NotFoundError(
            f"{endpoint_id} is not in this server's catalog (it can still be submitted, without local validation). "
            "list_fal_models shows the catalogued models."
        )
    return ModelDescription(
        model=endpoint_id,
        title=entry.title,
        family=entry.family,
        task=entry.task,
        input_schema=_local_paths_said(compact(json_schema(entry.params)), entry.file_fields),
        output_schema=compact(json_schema(entry.output), drop_null=False),
        example_input=example_input(entry.params),
        next=f"Submit with submit_fal_job(model='{endpoint_id}', input={{...}}); send only the fields you set."
        + ROUTE_NOTES.get(entry.route_family, ""),
    )


async def describe_priced(rt: Runtime, model: str) -> ModelDescription:
    """describe_model, with the model's price: its unit and unit price, where that came from and when; or why none
    is known. A price lookup never fails the description (a broken price table or ledger is said as the reason)."""
    description = describe_model(model)
    try:
        price, note = await rt.money.price_of(description.model)
    except (FalError, LedgerError) as exc:
        price, note = None, f"no price is known for this model: {exc}"
    return description.model_copy(update={"price": price_text(price, note)})


def price_text(price: Price | None, note: str | None) -> str:
    if price is None:
        return note or "no price is known for this model"
    text = f"{price.unit_price:g} {price.currency} per {price.unit} ({price.source}, as of {price.as_of})"
    return f"{text}; {note}" if note else text


def _local_paths_said(schema: dict[str, Any], file_fields: tuple[str, ...]) -> dict[str, Any]:
    """The schema with each file field saying it also takes a local file path (submit_fal_job uploads it)."""
    properties: dict[str, Any] = schema.get("properties", {})
    for name in file_fields:
        field = properties.get(name)
        if isinstance(field, dict):
            said = field.get("description")
            note = LOCAL_PATH_LIST_NOTE if field.get("type") == "array" else LOCAL_PATH_NOTE
            field["description"] = f"{said} {note}" if said else note
    return schema


def summarize(entry: CatalogEntry) -> ModelSummary:
    required, key_parameters = _key_facts(entry)
    return ModelSummary(
        model=entry.endpoint_id,
        title=entry.title,
        family=entry.family,
        task=entry.task,
        featured=entry.featured,
        required=list(required),
        key_parameters=key_parameters,
    )


@functools.cache  # the catalog does not change while the server runs; list_fal_models needs every entry's
def _key_facts(entry: CatalogEntry) -> tuple[tuple[str, ...], str]:
    """The entry's required fields, and its first few optional fields with a listed set of values."""
    schema = compact(json_schema(entry.params))
    properties: dict[str, Any] = schema.get("properties", {})
    required = list(schema.get("required", []))
    # An open choice (Kling's model_name) lists its known values as examples: they are shown like an enum.
    choices = {name: prop.get("enum") or [*prop.get("examples", []), "…"] for name, prop in properties.items()}
    notable = [name for name in properties if name not in required and choices[name] != ["…"]]
    parts = [f"{name}: {'|'.join(str(v) for v in choices[name])}" for name in notable[:KEY_FIELDS_SHOWN]]
    return tuple(required), "; ".join(parts)


def families() -> list[str]:
    return sorted({entry.family for entry in CATALOG.values()})


def tasks() -> list[str]:
    return sorted({entry.task for entry in CATALOG.values()})


def featured_input_schema() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The `anyOf` arms for submit_fal_job's `input` (one per featured model, then any object) and their `$defs`."""
    featured = {entry.endpoint_id: entry.params for entry in CATALOG.values() if entry.featured}
    refs, defs = shared_defs_schema(featured)
    arms: list[dict[str, Any]] = []
    for endpoint_id, ref in refs.items():
        name = ref["$ref"].removeprefix("#/$defs/")
        defs[name] = {**defs[name], "description": endpoint_id}
        arms.append(ref)
    # Open on purpose: without additionalProperties a strict client (pydantic-ai's OpenAI conversion) closes it;
    # {} rather than true, which google-genai's converter cannot read (see tools.mcp_tools).
    arms.append(
        {"type": "object", "additionalProperties": {}, "description": "any other model (see describe_fal_model)"}
    )
    return arms, numeric_enums_as_ranges(without_descriptions(compact(defs), SELF_EXPLANATORY))

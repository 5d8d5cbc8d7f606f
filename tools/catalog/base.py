"""Building blocks of the catalog: the parameter-model base, the shared file model, and a catalog entry.

A model's parameters live in exactly one pydantic class; the tool schema, local validation, the sandbox's
422 answers and the docs are all derived from it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from server.route_family import RouteFamily, route_family_of

Task = Literal[
    "text-to-video",
    "image-to-video",
    "first-last-frame-to-video",
    "reference-to-video",
    "extend-video",
    "text-to-image",
    "virtual-try-on",
]
IMAGE_TASKS: frozenset[Task] = frozenset({"text-to-image", "virtual-try-on"})


class FalInput(BaseModel):
    """Base of every parameter model.

    Strict, so a value fal would refuse (a number where it wants a string enum) is refused here rather than by a
    billed job; `validation` first corrects the unambiguous slips (5 for "5"), with a note. Extra fields are
    allowed: fal keeps adding optional ones, and they are passed through with a note.
    """

    model_config = ConfigDict(extra="allow", strict=True)


class FalFile(BaseModel):
    """A file in a model's output; fal adds fields over time, so extras are kept."""

    model_config = ConfigDict(extra="allow")

    url: str
    content_type: str | None = None
    file_name: str | None = None
    file_size: int | float | None = None


class VideoOutput(BaseModel):
    model_config = ConfigDict(extra="allow")

    video: FalFile


class ImageFile(FalFile):
    """An image in a model's output, with its size when fal reports it."""

    width: int | None = None
    height: int | None = None


class VideoFile(FalFile):
    """A video in a model's output, with the details some models report."""

    width: int | None = None
    height: int | None = None
    fps: float | None = None
    duration: float | None = None
    num_frames: int | None = None


# Reusable field types, so each fact about a shared field is written once.
ImageUrl = Annotated[str, Field(description="URL (or data URI) of the input image.")]

# The fields below carry no default of their own: fal's defaults differ per model, so each model sets one.
EndImageUrl = Annotated[str | None, Field(description="Image the clip should end on.")]
Seed = Annotated[int | None, Field(description="Random seed, for repeatable results.")]
GenerateAudio = Annotated[bool, Field(description="Also generate a matching soundtrack.")]
SafetyChecker = Annotated[bool, Field(description="Run fal's content safety checker.")]


@dataclass(frozen=True)
class FileInput:
    """Marks a parameter that takes a file: a URL, or a local path that the server turns into one on submit.

    Fields named `*_url`/`*_urls` are file fields without a mark (inlined as data URIs); a mark names other file
    fields (Kling's `image`, `human_image`) and says how an inlined file is written and what the model accepts.
    """

    inline: Literal["data_uri", "raw_base64"] = "data_uri"  # raw_base64: no `data:` prefix (Kling wants that)
    accepts: tuple[str, ...] = ()  # MIME types the model takes; empty: any media
    max_bytes: int | None = None  # the model's own size limit, if it has one


@dataclass(frozen=True)
class NotAFile:
    """Marks a `*_url` field that is not a file (a callback URL): a local path there is not read."""


def file_inputs(params: type[BaseModel]) -> dict[str, FileInput]:
    """The parameter model's top-level file fields, each with how a local file is put into it."""
    found: dict[str, FileInput] = {}
    for name, info in params.model_fields.items():
        marks = [mark for mark in info.metadata if isinstance(mark, FileInput | NotAFile)]
        if marks:
            if isinstance(marks[0], FileInput):
                found[name] = marks[0]
        elif name.endswith(("_url", "_urls")):
            found[name] = FileInput()
    return found


@dataclass(frozen=True)
class OpenChoice:
    """A string with a list of known values that also accepts newer names of the same form (with a note).

    For names an upstream keeps adding (Kling's `kling-v3`, ...): a typo or a name from another family is refused
    before anything is paid for, a newer name is sent as it is.
    """

    known: tuple[str, ...]
    form: str  # a regular expression a newer name must match in full

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler.resolve_ref_schema(handler(schema))
        form = f"(?:{self.form})" if "|" in self.form else self.form
        json_schema.update(examples=list(self.known), pattern=f"^{form}$")
        return json_schema

    def _check(self, value: str | None) -> str | None:
        if value is None or value in self.known or re.fullmatch(self.form, value):
            return value
        raise PydanticCustomError(
            "open_choice", "should be one of {known}, or a newer name of that form", {"known": ", ".join(self.known)}
        )


def unlisted_choice_notes(params: type[BaseModel], body: Mapping[str, Any]) -> list[str]:
    """A note for each top-level open-choice value that is accepted but not one this catalog knows."""
    notes = []
    for name, info in params.model_fields.items():
        value = body.get(name)
        for mark in info.metadata:
            if isinstance(mark, OpenChoice) and isinstance(value, str) and value not in mark.known:
                notes.append(
                    f"{name} {value!r} is not one this server knows ({', '.join(mark.known)}); it was sent as it is, "
                    "on the assumption that it is a newer name."
                )
    return notes


@dataclass(frozen=True)
class CatalogEntry:
    endpoint_id: str
    family: str
    task: Task
    params: type[FalInput]
    output: type[BaseModel]
    title: str
    featured: bool = False

    @property
    def route_family(self) -> RouteFamily:
        """The UniAPI route family this model is reached by: fal, kling or luma (from the id)."""
        return route_family_of(self.endpoint_id)

    @property
    def media_kind(self) -> Literal["image", "video"]:
        return "image" if self.task in IMAGE_TASKS else "video"

    @property
    def required_fields(self) -> tuple[str, ...]:
        return tuple(name for name, info in self.params.model_fields.items() if info.is_required())

    @property
    def file_fields(self) -> tuple[str, ...]:
        """The fields that take files (`image_url`, `image_urls`, Kling's `image`, ...; see `file_inputs`): each also
        takes a local file path, which submit turns into a URL or inlines (tools.uploads)."""
        return tuple(file_inputs(self.params))


class EntryFactory(Protocol):
    def __call__(
        self, endpoint_id: str, task: Task, params: type[FalInput], title: str, featured: bool = False
    ) -> CatalogEntry: ...


def entry_factory(family: str, output: type[BaseModel]) -> EntryFactory:
    """Builds the catalog entries of a module whose models share a family and an output model."""

    def entry(endpoint_id: str, task: Task, params: type[FalInput], title: str, featured: bool = False) -> CatalogEntry:
        return CatalogEntry(endpoint_id, family, task, params, output, title, featured)

    return entry

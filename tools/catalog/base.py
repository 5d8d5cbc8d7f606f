"""Building blocks of the catalog: the parameter-model base, the shared file model, and a catalog entry.

A model's parameters live in exactly one pydantic class; the tool schema, local validation, the sandbox's
422 answers and the docs are all derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

Task = Literal[
    "text-to-video",
    "image-to-video",
    "first-last-frame-to-video",
    "reference-to-video",
    "text-to-image",
]


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
class CatalogEntry:
    endpoint_id: str
    family: str
    task: Task
    params: type[FalInput]
    output: type[BaseModel]
    title: str
    featured: bool = False

    @property
    def required_fields(self) -> tuple[str, ...]:
        return tuple(name for name, info in self.params.model_fields.items() if info.is_required())

    @property
    def file_fields(self) -> tuple[str, ...]:
        """The fields that take file URLs (`image_url`, `tail_image_url`, `image_urls`, ...): each also takes a local
        file path, which submit turns into a URL (tools.uploads)."""
        return tuple(name for name in self.params.model_fields if name.endswith(("_url", "_urls")))


class EntryFactory(Protocol):
    def __call__(
        self, endpoint_id: str, task: Task, params: type[FalInput], title: str, featured: bool = False
    ) -> CatalogEntry: ...


def entry_factory(family: str, output: type[BaseModel]) -> EntryFactory:
    """Builds the catalog entries of a module whose models share a family and an output model."""

    def entry(endpoint_id: str, task: Task, params: type[FalInput], title: str, featured: bool = False) -> CatalogEntry:
        return CatalogEntry(endpoint_id, family, task, params, output, title, featured)

    return entry

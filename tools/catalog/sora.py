"""OpenAI Sora 2 and Sora 2 Pro video models (fal-ai/sora-2/...).

Here duration is an integer enum, not a string one. Only the non-Pro endpoints take a model snapshot.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from tools.catalog.base import CatalogEntry, FalInput, ImageFile, ImageUrl, VideoFile, entry_factory

SoraModel = Annotated[
    Literal["sora-2", "sora-2-2025-12-08", "sora-2-2025-10-06"], Field(description="Sora 2 snapshot to use.")
]


class _SoraBase(FalInput):
    prompt: str = Field(min_length=1, max_length=5000, description="What should happen in the clip.")
    duration: Literal[4, 8, 12, 16, 20] = Field(4, description="Clip length in seconds.")
    delete_video: bool = Field(True, description="Delete the video from OpenAI afterwards.")
    character_ids: list[str] | None = Field(None, description="Saved characters to include.")
    detect_and_block_ip: bool = Field(False, description="Refuse prompts naming protected IP.")


class _SoraTextToVideo(_SoraBase):
    aspect_ratio: Literal["9:16", "16:9"] = Field("16:9", description="Frame shape of the clip.")


class _SoraImageToVideo(_SoraBase):
    image_url: ImageUrl
    aspect_ratio: Literal["auto", "9:16", "16:9"] = Field("auto", description="Frame shape; auto follows the image.")


class Sora2TextToVideo(_SoraTextToVideo):
    resolution: Literal["720p"] = Field("720p", description="Output resolution (720p only).")
    model: SoraModel = "sora-2"


class Sora2ImageToVideo(_SoraImageToVideo):
    resolution: Literal["auto", "720p"] = Field("auto", description="Output resolution.")
    model: SoraModel = "sora-2"


class Sora2ProTextToVideo(_SoraTextToVideo):
    resolution: Literal["720p", "1080p", "true_1080p"] = Field("1080p", description="Output resolution.")


class Sora2ProImageToVideo(_SoraImageToVideo):
    resolution: Literal["auto", "720p", "1080p", "true_1080p"] = Field("auto", description="Output resolution.")


class SoraOutput(BaseModel):
    model_config = ConfigDict(extra="allow")

    video: VideoFile
    video_id: str
    thumbnail: ImageFile | None = None
    spritesheet: ImageFile | None = None


_entry = entry_factory("sora", SoraOutput)


ENTRIES: tuple[CatalogEntry, ...] = (
    _entry("fal-ai/sora-2/text-to-video", "text-to-video", Sora2TextToVideo, "Sora 2, text to video", featured=True),
    _entry("fal-ai/sora-2/image-to-video", "image-to-video", Sora2ImageToVideo, "Sora 2, image to video"),
    _entry("fal-ai/sora-2/text-to-video/pro", "text-to-video", Sora2ProTextToVideo, "Sora 2 Pro, text to video"),
    _entry("fal-ai/sora-2/image-to-video/pro", "image-to-video", Sora2ProImageToVideo, "Sora 2 Pro, image to video"),
)

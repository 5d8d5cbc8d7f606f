"""ByteDance Seedance 1.0 video models: Pro, Pro Fast and Lite (fal-ai/bytedance/seedance/v1/...).

Pro defaults to 1080p and Lite to 720p; Lite text-to-video adds a 9:21 frame; Pro Fast image-to-video takes no
end frame.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tools.catalog.base import (
    CatalogEntry,
    EndImageUrl,
    FalFile,
    FalInput,
    ImageUrl,
    SafetyChecker,
    Seed,
    entry_factory,
)

Resolution = Literal["480p", "720p", "1080p"]


class _SeedanceBase(FalInput):
    prompt: str = Field(description="What should happen in the clip.")
    resolution: Resolution = Field("1080p", description="Output resolution.")
    duration: Literal["2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"] = Field(
        "5", description="Clip length in seconds."
    )
    num_frames: int | None = Field(None, ge=29, le=289, description="Exact frame count, instead of duration.")
    camera_fixed: bool = Field(False, description="Keep the camera still.")
    seed: Seed = None
    enable_safety_checker: SafetyChecker = True


class _SeedanceProTextToVideo(_SeedanceBase):
    aspect_ratio: Literal["21:9", "16:9", "4:3", "1:1", "3:4", "9:16"] = Field(
        "16:9", description="Frame shape of the clip."
    )


class _SeedanceImageToVideo(_SeedanceBase):
    image_url: ImageUrl
    aspect_ratio: Literal["21:9", "16:9", "4:3", "1:1", "3:4", "9:16", "auto"] = Field(
        "auto", description="Frame shape; auto follows the image."
    )


class _SeedanceStartEndToVideo(_SeedanceImageToVideo):
    end_image_url: EndImageUrl = None


class SeedanceV1ProTextToVideo(_SeedanceProTextToVideo):
    pass


class SeedanceV1ProImageToVideo(_SeedanceStartEndToVideo):
    pass


class SeedanceV1ProFastTextToVideo(_SeedanceProTextToVideo):
    pass


class SeedanceV1ProFastImageToVideo(_SeedanceImageToVideo):
    pass


class SeedanceV1LiteTextToVideo(_SeedanceBase):
    resolution: Resolution = Field("720p", description="Output resolution.")
    aspect_ratio: Literal["21:9", "16:9", "4:3", "1:1", "3:4", "9:16", "9:21"] = Field(
        "16:9", description="Frame shape of the clip."
    )


class SeedanceV1LiteImageToVideo(_SeedanceStartEndToVideo):
    resolution: Resolution = Field("720p", description="Output resolution.")


class SeedanceOutput(BaseModel):
    model_config = ConfigDict(extra="allow")

    video: FalFile
    seed: int


_entry = entry_factory("seedance", SeedanceOutput)


ENTRIES: tuple[CatalogEntry, ...] = (
    _entry(
        "fal-ai/bytedance/seedance/v1/pro/text-to-video",
        "text-to-video",
        SeedanceV1ProTextToVideo,
        "Seedance 1.0 Pro, text to video",
    ),
    _entry(
        "fal-ai/bytedance/seedance/v1/pro/image-to-video",
        "image-to-video",
        SeedanceV1ProImageToVideo,
        "Seedance 1.0 Pro, image to video",
    ),
    _entry(
        "fal-ai/bytedance/seedance/v1/pro/fast/text-to-video",
        "text-to-video",
        SeedanceV1ProFastTextToVideo,
        "Seedance 1.0 Pro Fast, text to video",
    ),
    _entry(
        "fal-ai/bytedance/seedance/v1/pro/fast/image-to-video",
        "image-to-video",
        SeedanceV1ProFastImageToVideo,
        "Seedance 1.0 Pro Fast, image to video",
    ),
    _entry(
        "fal-ai/bytedance/seedance/v1/lite/text-to-video",
        "text-to-video",
        SeedanceV1LiteTextToVideo,
        "Seedance 1.0 Lite, text to video",
    ),
    _entry(
        "fal-ai/bytedance/seedance/v1/lite/image-to-video",
        "image-to-video",
        SeedanceV1LiteImageToVideo,
        "Seedance 1.0 Lite, image to video",
    ),
)

"""Luma Dream Machine Ray 2 and Ray 2 Flash video models (fal-ai/luma-dream-machine/...).

The image-to-video endpoints list both frames as optional, as fal publishes them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tools.catalog.base import CatalogEntry, EndImageUrl, FalInput, VideoOutput, entry_factory


class _LumaRayTextToVideo(FalInput):
    prompt: str = Field(min_length=3, max_length=5000, description="What should happen in the clip.")
    aspect_ratio: Literal["16:9", "9:16", "4:3", "3:4", "21:9", "9:21"] = Field(
        "16:9", description="Frame shape of the clip."
    )
    resolution: Literal["540p", "720p", "1080p"] = Field("540p", description="Output resolution.")
    duration: Literal["5s", "9s"] = Field("5s", description="Clip length.")
    loop: bool = Field(False, description="Make the clip loop seamlessly.")


class _LumaRayImageToVideo(_LumaRayTextToVideo):
    image_url: str | None = Field(None, description="Image the clip starts from.")
    end_image_url: EndImageUrl = None


class LumaRay2TextToVideo(_LumaRayTextToVideo):
    pass


class LumaRay2ImageToVideo(_LumaRayImageToVideo):
    pass


class LumaRay2FlashTextToVideo(_LumaRayTextToVideo):
    pass


class LumaRay2FlashImageToVideo(_LumaRayImageToVideo):
    pass


_entry = entry_factory("luma-ray", VideoOutput)


ENTRIES: tuple[CatalogEntry, ...] = (
    _entry("fal-ai/luma-dream-machine/ray-2", "text-to-video", LumaRay2TextToVideo, "Luma Ray 2, text to video"),
    _entry(
        "fal-ai/luma-dream-machine/ray-2/image-to-video",
        "image-to-video",
        LumaRay2ImageToVideo,
        "Luma Ray 2, image to video",
        featured=True,
    ),
    _entry(
        "fal-ai/luma-dream-machine/ray-2-flash",
        "text-to-video",
        LumaRay2FlashTextToVideo,
        "Luma Ray 2 Flash, text to video",
    ),
    _entry(
        "fal-ai/luma-dream-machine/ray-2-flash/image-to-video",
        "image-to-video",
        LumaRay2FlashImageToVideo,
        "Luma Ray 2 Flash, image to video",
    ),
)

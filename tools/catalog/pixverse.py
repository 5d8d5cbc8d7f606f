"""PixVerse 4.5 and 5 video models (fal-ai/pixverse/...). Only 4.5 image-to-video takes a camera movement."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tools.catalog.base import CatalogEntry, FalInput, ImageUrl, Seed, VideoOutput, entry_factory

CameraMovement = Literal[
    "horizontal_left",
    "horizontal_right",
    "vertical_up",
    "vertical_down",
    "zoom_in",
    "zoom_out",
    "crane_up",
    "quickly_zoom_in",
    "quickly_zoom_out",
    "smooth_zoom_in",
    "camera_rotation",
    "robo_arm",
    "super_dolly_out",
    "whip_pan",
    "hitchcock",
    "left_follow",
    "right_follow",
    "pan_left",
    "pan_right",
    "fix_bg",
]


class _PixverseBase(FalInput):
    prompt: str = Field(description="What should happen in the clip.")
    negative_prompt: str = Field("", description="What to avoid.")
    resolution: Literal["360p", "540p", "720p", "1080p"] = Field("720p", description="Output resolution.")
    duration: Literal["5", "8"] = Field("5", description="Clip length in seconds.")
    style: Literal["anime", "3d_animation", "clay", "comic", "cyberpunk"] | None = Field(
        None, description="Visual style preset."
    )
    seed: Seed = None


class _PixverseTextToVideo(_PixverseBase):
    aspect_ratio: Literal["16:9", "4:3", "1:1", "3:4", "9:16"] = Field("16:9", description="Frame shape of the clip.")


class _PixverseImageToVideo(_PixverseBase):
    image_url: ImageUrl


class PixverseV45TextToVideo(_PixverseTextToVideo):
    pass


class PixverseV45ImageToVideo(_PixverseImageToVideo):
    camera_movement: CameraMovement | None = Field(None, description="Camera move to apply.")


class PixverseV5TextToVideo(_PixverseTextToVideo):
    pass


class PixverseV5ImageToVideo(_PixverseImageToVideo):
    pass


_entry = entry_factory("pixverse", VideoOutput)


ENTRIES: tuple[CatalogEntry, ...] = (
    _entry(
        "fal-ai/pixverse/v4.5/text-to-video", "text-to-video", PixverseV45TextToVideo, "PixVerse 4.5, text to video"
    ),
    _entry(
        "fal-ai/pixverse/v4.5/image-to-video", "image-to-video", PixverseV45ImageToVideo, "PixVerse 4.5, image to video"
    ),
    _entry("fal-ai/pixverse/v5/text-to-video", "text-to-video", PixverseV5TextToVideo, "PixVerse 5, text to video"),
    _entry(
        "fal-ai/pixverse/v5/image-to-video",
        "image-to-video",
        PixverseV5ImageToVideo,
        "PixVerse 5, image to video",
    ),
)

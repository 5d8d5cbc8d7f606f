"""Wan video models: Wan 2.5 preview and Wan 2.2 A14B (fal-ai/wan-25-preview/..., fal-ai/wan/v2.2-a14b/...)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from tools.catalog.base import (
    CatalogEntry,
    EndImageUrl,
    FalFile,
    FalInput,
    ImageUrl,
    SafetyChecker,
    Seed,
    Task,
    VideoFile,
)

PromptExpansion = Annotated[bool, Field(description="Let an LLM expand the prompt.")]


# Wan 2.5 preview: 5 or 10 s clips up to 1080p, optionally driven by an audio track.


class _Wan25Base(FalInput):
    prompt: str = Field(min_length=1, description="What should happen in the clip.")
    negative_prompt: str | None = Field(None, description="What to avoid.")
    duration: Literal["5", "10"] = Field("5", description="Clip length in seconds.")
    resolution: Literal["480p", "720p", "1080p"] = Field("1080p", description="Output resolution.")
    audio_url: str | None = Field(None, description="Audio track to sync the clip to.")
    seed: Seed = None
    enable_prompt_expansion: PromptExpansion = True
    enable_safety_checker: SafetyChecker = True


class Wan25TextToVideo(_Wan25Base):
    aspect_ratio: Literal["16:9", "9:16", "1:1"] = Field("16:9", description="Frame shape of the clip.")


class Wan25ImageToVideo(_Wan25Base):
    image_url: ImageUrl


class Wan25Output(BaseModel):
    model_config = ConfigDict(extra="allow")

    video: VideoFile
    seed: int
    actual_prompt: str | None = None


# Wan 2.2 A14B: frame-level control (frame count, fps, interpolation, two guidance stages).


class _Wan22Base(FalInput):
    prompt: str = Field(description="What should happen in the clip.")
    negative_prompt: str = Field("", description="What to avoid.")
    resolution: Literal["480p", "580p", "720p"] = Field("720p", description="Output resolution.")
    num_frames: int = Field(81, ge=17, le=161, description="Number of frames to generate.")
    frames_per_second: int = Field(16, ge=4, le=60, description="Frame rate of the output.")
    num_inference_steps: int = Field(27, ge=2, le=40, description="Denoising steps; more is slower.")
    guidance_scale: float = Field(3.5, ge=1, le=10, description="Prompt adherence, first stage.")
    shift: float = Field(5, ge=1, le=10, description="Noise schedule shift.")
    acceleration: Literal["none", "regular"] = Field("regular", description="Speed-up level.")
    interpolator_model: Literal["none", "film", "rife"] = Field("film", description="Frame interpolation model.")
    num_interpolated_frames: int = Field(1, ge=0, le=4, description="Frames added between each pair.")
    adjust_fps_for_interpolation: bool = Field(True, description="Scale fps to match interpolation.")
    video_quality: Literal["low", "medium", "high", "maximum"] = Field("high", description="Output encoding quality.")
    video_write_mode: Literal["fast", "balanced", "small"] = Field(
        "balanced", description="Encoding speed/size trade-off."
    )
    enable_prompt_expansion: PromptExpansion = False
    enable_safety_checker: SafetyChecker = False
    enable_output_safety_checker: bool = Field(False, description="Also check the generated video.")
    seed: Seed = None


class Wan22A14bTextToVideo(_Wan22Base):
    aspect_ratio: Literal["16:9", "9:16", "1:1"] = Field("16:9", description="Frame shape of the clip.")
    guidance_scale_2: float = Field(4, ge=1, le=10, description="Prompt adherence, second stage.")


class Wan22A14bImageToVideo(_Wan22Base):
    image_url: ImageUrl
    end_image_url: EndImageUrl = None
    aspect_ratio: Literal["auto", "16:9", "9:16", "1:1"] = Field(
        "auto", description="Frame shape; auto follows the image."
    )
    guidance_scale_2: float = Field(3.5, ge=1, le=10, description="Prompt adherence, second stage.")


class Wan22Output(BaseModel):
    model_config = ConfigDict(extra="allow")

    video: FalFile
    seed: int
    prompt: str = ""


def _entry(
    endpoint_id: str, task: Task, params: type[FalInput], output: type[BaseModel], title: str, featured: bool = False
) -> CatalogEntry:
    return CatalogEntry(endpoint_id, "wan", task, params, output, title, featured)


ENTRIES: tuple[CatalogEntry, ...] = (
    _entry(
        "fal-ai/wan-25-preview/text-to-video",
        "text-to-video",
        Wan25TextToVideo,
        Wan25Output,
        "Wan 2.5 Preview, text to video",
    ),
    _entry(
        "fal-ai/wan-25-preview/image-to-video",
        "image-to-video",
        Wan25ImageToVideo,
        Wan25Output,
        "Wan 2.5 Preview, image to video",
        featured=True,
    ),
    _entry(
        "fal-ai/wan/v2.2-a14b/text-to-video",
        "text-to-video",
        Wan22A14bTextToVideo,
        Wan22Output,
        "Wan 2.2 A14B, text to video",
    ),
    _entry(
        "fal-ai/wan/v2.2-a14b/image-to-video",
        "image-to-video",
        Wan22A14bImageToVideo,
        Wan22Output,
        "Wan 2.2 A14B, image to video",
    ),
)

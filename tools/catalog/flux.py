"""FLUX image models: FLUX.1 [dev] and [schnell], FLUX1.1 [pro] and [pro] ultra."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tools.catalog.base import CatalogEntry, FalInput, ImageFile, SafetyChecker, Seed, Task

SizePreset = Literal["square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9"]


class ImageSize(FalInput):
    width: int = Field(512, le=14142, description="Width in pixels.")
    height: int = Field(512, le=14142, description="Height in pixels.")


class _FluxBase(FalInput):
    prompt: str = Field(description="What the image should show.")
    num_images: int = Field(1, ge=1, le=4, description="How many images to make.")
    output_format: Literal["jpeg", "png"] = Field("jpeg", description="Image file format.")
    sync_mode: bool = Field(False, description="Return images inline, not as URLs.")
    enable_safety_checker: SafetyChecker = True
    seed: Seed = None


class _FluxOpenWeights(_FluxBase):
    image_size: SizePreset | ImageSize = Field("landscape_4_3", description="Size preset or exact width/height.")
    acceleration: Literal["none", "regular", "high"] = Field("none", description="Speed-up level.")
    guidance_scale: float = Field(3.5, ge=1, le=20, description="How closely to follow the prompt.")


class FluxDev(_FluxOpenWeights):
    num_inference_steps: int = Field(28, ge=1, le=50, description="Denoising steps; more is slower.")


class FluxSchnell(_FluxOpenWeights):
    num_inference_steps: int = Field(4, ge=1, le=12, description="Denoising steps; more is slower.")


class _FluxPro(_FluxBase):
    safety_tolerance: Literal["1", "2", "3", "4", "5", "6"] = Field(
        "2", description="Moderation strictness, 1 strictest."
    )
    enhance_prompt: bool = Field(False, description="Let the model enrich the prompt.")


class FluxPro11(_FluxPro):
    image_size: SizePreset | ImageSize = Field("landscape_4_3", description="Size preset or exact width/height.")


class FluxPro11Ultra(_FluxPro):
    aspect_ratio: Literal["21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21"] = Field(
        "16:9", description="Frame shape of the image."
    )
    image_url: str | None = Field(None, description="Image to use as a visual prompt.")
    image_prompt_strength: float = Field(0.1, ge=0, le=1, description="How strongly the image prompt steers.")
    raw: bool = Field(False, description="Less processed, more natural look.")


class FluxOutput(BaseModel):
    model_config = ConfigDict(extra="allow")

    images: list[ImageFile]
    prompt: str
    seed: int
    has_nsfw_concepts: list[bool]
    timings: dict[str, float]


def _entry(endpoint_id: str, params: type[FalInput], title: str, featured: bool = False) -> CatalogEntry:
    task: Task = "text-to-image"
    return CatalogEntry(endpoint_id, "flux", task, params, FluxOutput, title, featured)


ENTRIES: tuple[CatalogEntry, ...] = (
    _entry("fal-ai/flux/dev", FluxDev, "FLUX.1 [dev], text to image", featured=True),
    _entry("fal-ai/flux/schnell", FluxSchnell, "FLUX.1 [schnell], text to image"),
    _entry("fal-ai/flux-pro/v1.1", FluxPro11, "FLUX1.1 [pro], text to image"),
    _entry("fal-ai/flux-pro/v1.1-ultra", FluxPro11Ultra, "FLUX1.1 [pro] ultra, text to image"),
)

"""MiniMax video models: Hailuo 02, Hailuo 2.3 and Video-01 (fal-ai/minimax/...).

The prompt's lower bound differs per endpoint (fal requires a non-empty prompt on some, not on others), and only
the Standard tiers take a duration; the facts are followed as they are.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from tools.catalog.base import CatalogEntry, EndImageUrl, FalInput, ImageUrl, VideoOutput, entry_factory

Duration = Annotated[Literal["6", "10"], Field(description="Clip length in seconds.")]


class _MinimaxBase(FalInput):
    prompt: str = Field(max_length=2000, description="What should happen in the clip.")
    prompt_optimizer: bool = Field(True, description="Let the model refine the prompt.")


class _NonEmptyPrompt(_MinimaxBase):
    prompt: str = Field(min_length=1, max_length=2000, description="What should happen in the clip.")


class _NonEmptyPromptWithDuration(_NonEmptyPrompt):
    duration: Duration = "6"


# Video-01


class MinimaxVideo01TextToVideo(_MinimaxBase):
    pass


class MinimaxVideo01ImageToVideo(_MinimaxBase):
    image_url: ImageUrl


# Hailuo 02


class Hailuo02StandardTextToVideo(_NonEmptyPromptWithDuration):
    pass


class Hailuo02ProTextToVideo(_NonEmptyPrompt):
    pass


class _Hailuo02ImageToVideo(_MinimaxBase):
    image_url: ImageUrl
    end_image_url: EndImageUrl = None


class Hailuo02StandardImageToVideo(_Hailuo02ImageToVideo):
    duration: Duration = "6"
    resolution: Literal["512P", "768P"] = Field("768P", description="Output resolution.")


class Hailuo02ProImageToVideo(_Hailuo02ImageToVideo):
    pass


# Hailuo 2.3


class Hailuo23StandardTextToVideo(_NonEmptyPromptWithDuration):
    pass


class Hailuo23StandardImageToVideo(_NonEmptyPromptWithDuration):
    image_url: ImageUrl


class Hailuo23ProTextToVideo(_NonEmptyPrompt):
    pass


class Hailuo23ProImageToVideo(_NonEmptyPrompt):
    image_url: ImageUrl


_entry = entry_factory("minimax-hailuo", VideoOutput)


ENTRIES: tuple[CatalogEntry, ...] = (
    _entry(
        "fal-ai/minimax/hailuo-02/standard/text-to-video",
        "text-to-video",
        Hailuo02StandardTextToVideo,
        "Hailuo 02 Standard, text to video",
    ),
    _entry(
        "fal-ai/minimax/hailuo-02/standard/image-to-video",
        "image-to-video",
        Hailuo02StandardImageToVideo,
        "Hailuo 02 Standard, image to video",
        featured=True,
    ),
    _entry(
        "fal-ai/minimax/hailuo-02/pro/text-to-video",
        "text-to-video",
        Hailuo02ProTextToVideo,
        "Hailuo 02 Pro, text to video",
    ),
    _entry(
        "fal-ai/minimax/hailuo-02/pro/image-to-video",
        "image-to-video",
        Hailuo02ProImageToVideo,
        "Hailuo 02 Pro, image to video",
    ),
    _entry(
        "fal-ai/minimax/hailuo-2.3/standard/text-to-video",
        "text-to-video",
        Hailuo23StandardTextToVideo,
        "Hailuo 2.3 Standard, text to video",
    ),
    _entry(
        "fal-ai/minimax/hailuo-2.3/standard/image-to-video",
        "image-to-video",
        Hailuo23StandardImageToVideo,
        "Hailuo 2.3 Standard, image to video",
    ),
    _entry(
        "fal-ai/minimax/hailuo-2.3/pro/text-to-video",
        "text-to-video",
        Hailuo23ProTextToVideo,
        "Hailuo 2.3 Pro, text to video",
    ),
    _entry(
        "fal-ai/minimax/hailuo-2.3/pro/image-to-video",
        "image-to-video",
        Hailuo23ProImageToVideo,
        "Hailuo 2.3 Pro, image to video",
    ),
    _entry("fal-ai/minimax/video-01", "text-to-video", MinimaxVideo01TextToVideo, "MiniMax Video-01, text to video"),
    _entry(
        "fal-ai/minimax/video-01/image-to-video",
        "image-to-video",
        MinimaxVideo01ImageToVideo,
        "MiniMax Video-01, image to video",
    ),
)

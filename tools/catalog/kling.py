"""Kling video models (fal-ai/kling-video/...).

Up to 2.5, every model takes the same core (5 or 10 s, cfg_scale); 2.6 adds audio and its image-to-video model
takes start/end frames and no cfg_scale; 3 allows 3-15 s and multi-shot prompts.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from tools.catalog.base import (
    CatalogEntry,
    EndImageUrl,
    FalInput,
    GenerateAudio,
    ImageUrl,
    VideoOutput,
    entry_factory,
)

NegativePrompt = Annotated[str, Field(max_length=2500, description="What to avoid.")]
CfgScale = Annotated[float, Field(ge=0, le=1, description="How closely to follow the prompt.")]
AspectRatio = Annotated[Literal["16:9", "9:16", "1:1"], Field(description="Frame shape of the clip.")]
StartImageUrl = Annotated[str, Field(description="Image the clip starts from.")]
V3Duration = Literal["3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15"]
ShotDuration = Literal["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15"]


class _KlingBase(FalInput):
    prompt: str = Field(max_length=2500, description="What should happen in the clip.")
    duration: Literal["5", "10"] = Field("5", description="Clip length in seconds.")
    negative_prompt: NegativePrompt = "blur, distort, and low quality"


class _KlingWithCfg(_KlingBase):
    cfg_scale: CfgScale = 0.5


class _KlingTextToVideo(_KlingWithCfg):
    aspect_ratio: AspectRatio = "16:9"


class _KlingImageToVideo(_KlingWithCfg):
    image_url: ImageUrl


class _KlingImageToVideoWithTail(_KlingImageToVideo):
    tail_image_url: EndImageUrl = None


# Kling 1.6


class KlingV16StandardTextToVideo(_KlingTextToVideo):
    pass


class KlingV16StandardImageToVideo(_KlingImageToVideo):
    pass


class KlingV16ProTextToVideo(_KlingTextToVideo):
    pass


class KlingV16ProImageToVideo(_KlingImageToVideoWithTail):
    aspect_ratio: AspectRatio = "16:9"


# Kling 2 and 2.1


class KlingV2MasterTextToVideo(_KlingTextToVideo):
    pass


class KlingV2MasterImageToVideo(_KlingImageToVideo):
    pass


class KlingV21StandardImageToVideo(_KlingImageToVideo):
    pass


class KlingV21ProImageToVideo(_KlingImageToVideoWithTail):
    pass


class KlingV21MasterTextToVideo(_KlingTextToVideo):
    pass


class KlingV21MasterImageToVideo(_KlingImageToVideo):
    pass


# Kling 2.5 Turbo


class KlingV25TurboProTextToVideo(_KlingTextToVideo):
    pass


class KlingV25TurboProImageToVideo(_KlingImageToVideoWithTail):
    pass


class KlingV25TurboStandardImageToVideo(_KlingImageToVideo):
    pass


# Kling 2.6: native audio; the image-to-video model takes start/end frames and has no cfg_scale.


class KlingV26ProTextToVideo(_KlingTextToVideo):
    generate_audio: GenerateAudio = True


class KlingV26ProImageToVideo(_KlingBase):
    start_image_url: StartImageUrl
    end_image_url: EndImageUrl = None
    generate_audio: GenerateAudio = True
    voice_ids: list[str] | None = Field(None, description="Voices to use for speech.")


# Kling 3: 3-15 s clips, optional multi-shot prompts (so a single prompt is optional).


class KlingShot(FalInput):
    prompt: str = Field(description="What happens in this shot.")
    duration: ShotDuration = Field("5", description="Shot length in seconds.")


class KlingElement(FalInput):
    frontal_image_url: str | None = Field(None, description="Front view of the element.")
    reference_image_urls: list[str] | None = Field(None, description="Extra views of the element.")
    video_url: str | None = Field(None, description="Video of the element.")
    voice_id: str | None = Field(None, description="Voice bound to this element.")


class _KlingV3Base(FalInput):
    prompt: str | None = Field(None, max_length=2500, description="What should happen in the clip.")
    duration: V3Duration = Field("5", description="Clip length in seconds.")
    multi_prompt: list[KlingShot] | None = Field(None, description="Shot-by-shot prompts instead of one.")
    shot_type: Literal["customize", "intelligent"] = Field("customize", description="How shots are planned.")
    negative_prompt: NegativePrompt = "blur, distort, and low quality"
    cfg_scale: CfgScale = 0.5
    generate_audio: GenerateAudio = True


class _KlingV3TextToVideo(_KlingV3Base):
    aspect_ratio: AspectRatio = "16:9"


class _KlingV3ImageToVideo(_KlingV3Base):
    start_image_url: StartImageUrl
    end_image_url: EndImageUrl = None
    elements: list[KlingElement] | None = Field(None, description="Characters or objects to keep consistent.")


class KlingV3StandardTextToVideo(_KlingV3TextToVideo):
    pass


class KlingV3StandardImageToVideo(_KlingV3ImageToVideo):
    pass


class KlingV3ProTextToVideo(_KlingV3TextToVideo):
    pass


class KlingV3ProImageToVideo(_KlingV3ImageToVideo):
    pass


_entry = entry_factory("kling", VideoOutput)


ENTRIES: tuple[CatalogEntry, ...] = (
    _entry(
        "fal-ai/kling-video/v1.6/standard/text-to-video",
        "text-to-video",
        KlingV16StandardTextToVideo,
        "Kling 1.6 Standard, text to video",
    ),
    _entry(
        "fal-ai/kling-video/v1.6/standard/image-to-video",
        "image-to-video",
        KlingV16StandardImageToVideo,
        "Kling 1.6 Standard, image to video",
    ),
    _entry(
        "fal-ai/kling-video/v1.6/pro/text-to-video",
        "text-to-video",
        KlingV16ProTextToVideo,
        "Kling 1.6 Pro, text to video",
    ),
    _entry(
        "fal-ai/kling-video/v1.6/pro/image-to-video",
        "image-to-video",
        KlingV16ProImageToVideo,
        "Kling 1.6 Pro, image to video",
    ),
    _entry(
        "fal-ai/kling-video/v2/master/text-to-video",
        "text-to-video",
        KlingV2MasterTextToVideo,
        "Kling 2 Master, text to video",
    ),
    _entry(
        "fal-ai/kling-video/v2/master/image-to-video",
        "image-to-video",
        KlingV2MasterImageToVideo,
        "Kling 2 Master, image to video",
    ),
    _entry(
        "fal-ai/kling-video/v2.1/standard/image-to-video",
        "image-to-video",
        KlingV21StandardImageToVideo,
        "Kling 2.1 Standard, image to video",
        featured=True,
    ),
    _entry(
        "fal-ai/kling-video/v2.1/pro/image-to-video",
        "image-to-video",
        KlingV21ProImageToVideo,
        "Kling 2.1 Pro, image to video",
    ),
    _entry(
        "fal-ai/kling-video/v2.1/master/text-to-video",
        "text-to-video",
        KlingV21MasterTextToVideo,
        "Kling 2.1 Master, text to video",
    ),
    _entry(
        "fal-ai/kling-video/v2.1/master/image-to-video",
        "image-to-video",
        KlingV21MasterImageToVideo,
        "Kling 2.1 Master, image to video",
    ),
    _entry(
        "fal-ai/kling-video/v2.5-turbo/pro/text-to-video",
        "text-to-video",
        KlingV25TurboProTextToVideo,
        "Kling 2.5 Turbo Pro, text to video",
    ),
    _entry(
        "fal-ai/kling-video/v2.5-turbo/pro/image-to-video",
        "image-to-video",
        KlingV25TurboProImageToVideo,
        "Kling 2.5 Turbo Pro, image to video",
    ),
    _entry(
        "fal-ai/kling-video/v2.5-turbo/standard/image-to-video",
        "image-to-video",
        KlingV25TurboStandardImageToVideo,
        "Kling 2.5 Turbo Standard, image to video",
    ),
    _entry(
        "fal-ai/kling-video/v2.6/pro/text-to-video",
        "text-to-video",
        KlingV26ProTextToVideo,
        "Kling 2.6 Pro, text to video",
    ),
    _entry(
        "fal-ai/kling-video/v2.6/pro/image-to-video",
        "image-to-video",
        KlingV26ProImageToVideo,
        "Kling 2.6 Pro, image to video",
    ),
    _entry(
        "fal-ai/kling-video/v3/standard/text-to-video",
        "text-to-video",
        KlingV3StandardTextToVideo,
        "Kling 3 Standard, text to video",
    ),
    _entry(
        "fal-ai/kling-video/v3/standard/image-to-video",
        "image-to-video",
        KlingV3StandardImageToVideo,
        "Kling 3 Standard, image to video",
    ),
    _entry(
        "fal-ai/kling-video/v3/pro/text-to-video", "text-to-video", KlingV3ProTextToVideo, "Kling 3 Pro, text to video"
    ),
    _entry(
        "fal-ai/kling-video/v3/pro/image-to-video",
        "image-to-video",
        KlingV3ProImageToVideo,
        "Kling 3 Pro, image to video",
    ),
)

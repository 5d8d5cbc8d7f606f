"""Google Veo 3 and 3.1 video models (fal-ai/veo3/..., fal-ai/veo3.1/...).

Veo 3 and Veo 3.1 Lite offer 720p/1080p; the full Veo 3.1 models add 4k. Text-to-video defaults to 16:9 with
auto-fix on; the frame-driven models default to the input's aspect ("auto") with auto-fix off.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from tools.catalog.base import CatalogEntry, FalInput, GenerateAudio, ImageUrl, Seed, VideoOutput, entry_factory

Resolution = Annotated[Literal["720p", "1080p"], Field(description="Output resolution.")]
Resolution4k = Annotated[Literal["720p", "1080p", "4k"], Field(description="Output resolution.")]
AutoFix = Annotated[bool, Field(description="Rewrite prompts that fail policy checks.")]


class _VeoCore(FalInput):
    prompt: str = Field(max_length=20000, description="What should happen in the clip.")
    generate_audio: GenerateAudio = True
    safety_tolerance: Literal["1", "2", "3", "4", "5", "6"] = Field(
        "4", description="Moderation strictness, 1 strictest."
    )


class _VeoBase(_VeoCore):
    duration: Literal["4s", "6s", "8s"] = Field("8s", description="Clip length.")
    negative_prompt: str | None = Field(None, description="What to avoid.")
    seed: Seed = None


class _VeoTextToVideo(_VeoBase):
    aspect_ratio: Literal["16:9", "9:16"] = Field("16:9", description="Frame shape of the clip.")
    auto_fix: AutoFix = True


class _VeoFramesToVideo(_VeoBase):
    aspect_ratio: Literal["auto", "16:9", "9:16"] = Field("auto", description="Frame shape; auto follows the image.")
    auto_fix: AutoFix = False


class _VeoImageToVideo(_VeoFramesToVideo):
    image_url: ImageUrl


# Veo 3 (and Veo 3.1 Lite, which takes the same fields): up to 1080p


class _Veo3TextToVideo(_VeoTextToVideo):
    resolution: Resolution = "720p"


class _Veo3ImageToVideo(_VeoImageToVideo):
    resolution: Resolution = "720p"


class Veo3TextToVideo(_Veo3TextToVideo):
    pass


class Veo3FastTextToVideo(_Veo3TextToVideo):
    pass


class Veo3ImageToVideo(_Veo3ImageToVideo):
    pass


class Veo3FastImageToVideo(_Veo3ImageToVideo):
    pass


class Veo31LiteTextToVideo(_Veo3TextToVideo):
    pass


class Veo31LiteImageToVideo(_Veo3ImageToVideo):
    pass


# Veo 3.1: 4k as well


class _Veo31TextToVideo(_VeoTextToVideo):
    resolution: Resolution4k = "720p"


class _Veo31ImageToVideo(_VeoImageToVideo):
    resolution: Resolution4k = "720p"


class _Veo31FirstLastFrameToVideo(_VeoFramesToVideo):
    resolution: Resolution4k = "720p"
    first_frame_url: str = Field(description="Image the clip starts from.")
    last_frame_url: str = Field(description="Image the clip ends on.")


class Veo31TextToVideo(_Veo31TextToVideo):
    pass


class Veo31FastTextToVideo(_Veo31TextToVideo):
    pass


class Veo31ImageToVideo(_Veo31ImageToVideo):
    pass


class Veo31FastImageToVideo(_Veo31ImageToVideo):
    pass


class Veo31FirstLastFrameToVideo(_Veo31FirstLastFrameToVideo):
    pass


class Veo31FastFirstLastFrameToVideo(_Veo31FirstLastFrameToVideo):
    pass


class Veo31ReferenceToVideo(_VeoCore):
    image_urls: list[str] = Field(description="Reference images of the subject.")
    duration: Literal["8s"] = Field("8s", description="Clip length (8 s only).")
    resolution: Resolution4k = "720p"
    aspect_ratio: Literal["16:9", "9:16"] = Field("16:9", description="Frame shape of the clip.")
    auto_fix: AutoFix = False


_entry = entry_factory("veo", VideoOutput)


ENTRIES: tuple[CatalogEntry, ...] = (
    _entry("fal-ai/veo3", "text-to-video", Veo3TextToVideo, "Veo 3, text to video"),
    _entry("fal-ai/veo3/fast", "text-to-video", Veo3FastTextToVideo, "Veo 3 Fast, text to video"),
    _entry("fal-ai/veo3/image-to-video", "image-to-video", Veo3ImageToVideo, "Veo 3, image to video"),
    _entry("fal-ai/veo3/fast/image-to-video", "image-to-video", Veo3FastImageToVideo, "Veo 3 Fast, image to video"),
    _entry("fal-ai/veo3.1", "text-to-video", Veo31TextToVideo, "Veo 3.1, text to video"),
    _entry("fal-ai/veo3.1/fast", "text-to-video", Veo31FastTextToVideo, "Veo 3.1 Fast, text to video"),
    _entry("fal-ai/veo3.1/image-to-video", "image-to-video", Veo31ImageToVideo, "Veo 3.1, image to video"),
    _entry(
        "fal-ai/veo3.1/fast/image-to-video",
        "image-to-video",
        Veo31FastImageToVideo,
        "Veo 3.1 Fast, image to video",
        featured=True,
    ),
    _entry(
        "fal-ai/veo3.1/first-last-frame-to-video",
        "first-last-frame-to-video",
        Veo31FirstLastFrameToVideo,
        "Veo 3.1, first and last frame to video",
    ),
    _entry(
        "fal-ai/veo3.1/fast/first-last-frame-to-video",
        "first-last-frame-to-video",
        Veo31FastFirstLastFrameToVideo,
        "Veo 3.1 Fast, first and last frame to video",
    ),
    _entry(
        "fal-ai/veo3.1/reference-to-video",
        "reference-to-video",
        Veo31ReferenceToVideo,
        "Veo 3.1, reference images to video",
    ),
    _entry("fal-ai/veo3.1/lite", "text-to-video", Veo31LiteTextToVideo, "Veo 3.1 Lite, text to video"),
    _entry(
        "fal-ai/veo3.1/lite/image-to-video", "image-to-video", Veo31LiteImageToVideo, "Veo 3.1 Lite, image to video"
    ),
)

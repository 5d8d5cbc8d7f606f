"""Kling through UniAPI's native Kling routes (`kling/v1/...`): the official Kling API's JSON under a prefix.

Unlike fal's Kling models, these take `model_name` in the body, `duration` as a string ("5"), files as a URL or
raw base64 without a `data:` prefix (`image`, `image_tail`, ...), and a few rules across fields: an end frame,
masks and camera control exclude each other, and an end frame or masks allow 5 s only. Kling keeps adding model
names, so `model_name` lists the known ones and also accepts a newer `kling-v...` name, with a note.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from tools.catalog.base import CatalogEntry, FalInput, FileInput, NotAFile, OpenChoice
from tools.catalog.examples import EXAMPLE_IMAGE_URL

# The Kling API's limits on an input image: jpg or png, at most 10 MB (also at least 300 px, checked by Kling).
KLING_IMAGE = FileInput(inline="raw_base64", accepts=("image/jpeg", "image/png"), max_bytes=10 * 1024 * 1024)
KLING_NAME_FORM = r"kling-v[0-9]+(-[a-z0-9]+)*"
VIDEO_MODELS = (
    "kling-v1",
    "kling-v1-6",
    "kling-v2-master",
    "kling-v2-1-master",
    "kling-v2-5-turbo",
    "kling-v2-6",
    "kling-v3",
)
IMAGE_MODELS = ("kling-v1", "kling-v1-5", "kling-v2", "kling-v2-new", "kling-v2-1")
TRY_ON_MODELS = ("kolors-virtual-try-on-v1", "kolors-virtual-try-on-v1-5")
# Known models limited to 5 or 10 s; kling-v3 (and a newer name this catalog does not know yet) takes 3-15 s.
FIVE_OR_TEN_SECONDS = frozenset(name for name in VIDEO_MODELS if not name.startswith("kling-v3"))

KlingFile = Annotated[str | None, KLING_IMAGE]
Prompt = Annotated[str, Field(max_length=2500, description="What should happen in the clip.")]
OptionalPrompt = Annotated[str | None, Field(max_length=2500, description="What should happen in the clip.")]
NegativePrompt = Annotated[str | None, Field(max_length=2500, description="What to avoid.")]
CallbackUrl = Annotated[str | None, NotAFile(), Field(description="URL Kling calls when the task ends.")]
ExternalTaskId = Annotated[str | None, Field(description="Your own task id, unique per account.")]
Duration = Literal["3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15"]
CameraMove = Annotated[float | None, Field(ge=-10, le=10, description="Move strength, -10 to 10.")]


class KlingCameraConfig(FalInput):
    horizontal: CameraMove = None
    vertical: CameraMove = None
    pan: CameraMove = None
    tilt: CameraMove = None
    roll: CameraMove = None
    zoom: CameraMove = None


class KlingCameraControl(FalInput):
    type: Literal["simple", "down_back", "forward_up", "right_turn_forward", "left_turn_forward"] = Field(
        description="A preset move, or simple with config."
    )
    config: KlingCameraConfig | None = Field(None, description="The simple move: exactly one non-zero.")

    @model_validator(mode="after")
    def _config_only_with_simple(self) -> Self:
        if self.type != "simple":
            if self.config is not None:
                raise _rule(f"camera_control.config goes only with type 'simple', not {self.type!r}; leave it out")
            return self
        moves = self.config.model_dump(exclude_none=True).values() if self.config else ()
        if sum(1 for value in moves if isinstance(value, int | float) and value != 0) != 1:
            raise _rule(
                "camera_control of type 'simple' needs a config with exactly one non-zero move "
                '(horizontal, vertical, pan, tilt, roll or zoom), e.g. {"type": "simple", "config": {"zoom": 5}}'
            )
        return self


class KlingTrajectoryPoint(FalInput):
    x: int = Field(description="Horizontal pixel position.")
    y: int = Field(description="Vertical pixel position.")


class KlingDynamicMask(FalInput):
    mask: str = Field(description="Mask image: URL or raw base64.")
    trajectories: list[KlingTrajectoryPoint] = Field(description="Path the masked area follows.")


class _KlingVideo(FalInput):
    prompt: OptionalPrompt = None  # first in the schema; required for text to video
    model_name: Annotated[str, OpenChoice(VIDEO_MODELS, KLING_NAME_FORM)] = Field(
        "kling-v1", description="Kling model version."
    )
    negative_prompt: NegativePrompt = None
    cfg_scale: float = Field(0.5, ge=0, le=1, description="Prompt adherence, 0-1; not on v2.x.")
    mode: Literal["std", "pro"] = Field("std", description="std is faster, pro looks better.")
    duration: Duration = Field("5", description='"5" or "10" ("3"-"15" on kling-v3).')
    camera_control: KlingCameraControl | None = Field(None, description="Camera movement.")
    sound: Literal["on", "off"] | None = Field(None, description="Generate sound (kling-v2-6 and later).")
    callback_url: CallbackUrl = None
    external_task_id: ExternalTaskId = None

    @model_validator(mode="after")
    def _duration_fits_the_model(self) -> Self:
        if self.model_name in FIVE_OR_TEN_SECONDS and self.duration not in ("5", "10"):
            raise _rule(f'duration "{self.duration}" needs kling-v3; {self.model_name} takes "5" or "10" (a string)')
        return self


class KlingTextToVideo(_KlingVideo):
    prompt: Prompt
    aspect_ratio: Literal["16:9", "9:16", "1:1"] = Field("16:9", description="Frame shape of the clip.")


class KlingImageToVideo(_KlingVideo):
    """The clip's frame shape comes from the image, so there is no aspect_ratio."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"image": EXAMPLE_IMAGE_URL, "prompt": "The scene slowly comes alive"}]}
    )

    image: Annotated[KlingFile, Field(description="Start frame: URL or raw base64.")] = None
    image_tail: Annotated[KlingFile, Field(description="End frame: URL or raw base64.")] = None
    static_mask: Annotated[KlingFile, Field(description="Area that stays still: mask image.")] = None
    dynamic_masks: list[KlingDynamicMask] | None = Field(None, description="Areas that move along paths.")

    @model_validator(mode="after")
    def _frames_masks_and_camera(self) -> Self:
        if self.image is None and self.image_tail is None:
            raise _rule("give image (the start frame), image_tail (the end frame), or both")
        chosen = [
            name
            for name, present in (
                ("image_tail", self.image_tail is not None),
                ("static_mask/dynamic_masks", self.static_mask is not None or self.dynamic_masks is not None),
                ("camera_control", self.camera_control is not None),
            )
            if present
        ]
        if len(chosen) > 1:
            raise _rule(
                f"{' and '.join(chosen)} exclude each other (an end frame, masks and camera control cannot be "
                "combined); keep one"
            )
        if chosen and chosen[0] != "camera_control" and self.duration != "5":
            raise _rule(f'with {chosen[0]} only duration "5" is allowed; you asked for "{self.duration}"')
        return self


class KlingImages(FalInput):
    model_name: Annotated[str, OpenChoice(IMAGE_MODELS, KLING_NAME_FORM)] = Field(
        "kling-v1", description="Kling image model version."
    )
    prompt: str = Field(description="What the image should show.")
    negative_prompt: Annotated[str | None, Field(description="What to avoid.")] = None
    image: Annotated[KlingFile, Field(description="Reference image: URL or raw base64.")] = None
    image_reference: Literal["subject", "face"] | None = Field(None, description="What to keep from the image.")
    image_fidelity: float | None = Field(None, ge=0, le=1, description="How closely to follow the image.")
    human_fidelity: float | None = Field(None, ge=0, le=1, description="How closely to keep the face.")
    resolution: Literal["1k", "2k"] | None = Field(None, description="Output resolution.")
    n: int | None = Field(None, ge=1, le=9, description="Number of images.")
    aspect_ratio: Literal["16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9"] | None = Field(
        None, description="Frame shape of the image."
    )
    callback_url: CallbackUrl = None

    @model_validator(mode="after")
    def _reference_kind_on_v1_5(self) -> Self:
        if self.model_name == "kling-v1-5" and self.image is not None and self.image_reference is None:
            raise _rule('kling-v1-5 with an image needs image_reference ("subject" or "face")')
        return self


class KlingVirtualTryOn(FalInput):
    model_name: Annotated[str, OpenChoice(TRY_ON_MODELS, r"kolors-virtual-try-on-v[0-9]+(-[a-z0-9]+)*")] = Field(
        "kolors-virtual-try-on-v1", description="Try-on model version."
    )
    human_image: Annotated[str, KLING_IMAGE, Field(description="The person: URL or raw base64.")]
    cloth_image: Annotated[str, KLING_IMAGE, Field(description="The garment: URL or raw base64.")]
    callback_url: CallbackUrl = None
    external_task_id: ExternalTaskId = None


def _rule(message: str) -> PydanticCustomError:
    """A rule across fields, refused with a sentence that names them (no 'Value error,' prefix)."""
    return PydanticCustomError("kling_rule", message)


# --- what a finished task holds (`data.task_result`), read leniently ----------------------------------------------


class KlingVideoFile(BaseModel):
    model_config = ConfigDict(extra="allow")

    url: str
    id: str | None = None
    duration: str | None = None  # seconds, as a string ("5")


class KlingImage(BaseModel):
    model_config = ConfigDict(extra="allow")

    url: str
    index: int | None = None


class KlingVideoResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    videos: list[KlingVideoFile]


class KlingImageResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    images: list[KlingImage]


ENTRIES: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        "kling/v1/videos/text2video",
        "kling",
        "text-to-video",
        KlingTextToVideo,
        KlingVideoResult,
        "Kling (native route), text to video",
    ),
    CatalogEntry(
        "kling/v1/videos/image2video",
        "kling",
        "image-to-video",
        KlingImageToVideo,
        KlingVideoResult,
        "Kling (native route), image to video",
    ),
    CatalogEntry(
        "kling/v1/images/generations",
        "kling",
        "text-to-image",
        KlingImages,
        KlingImageResult,
        "Kling (native route), images",
    ),
    CatalogEntry(
        "kling/v1/images/kolors-virtual-try-on",
        "kling",
        "virtual-try-on",
        KlingVirtualTryOn,
        KlingImageResult,
        "Kling Kolors (native route), virtual try-on",
    ),
)

"""Luma through UniAPI's native Luma routes (`luma/generations`), in the convention the relays share.

Generate takes `user_prompt` (not `prompt`) and optional first and last frames; extending a finished clip is the
model `luma/generations/extend`, whose `source_request_id` names the job to extend (the route puts it in the
URL path). The relays disagree on some spellings (`duration` "5s" or "5", resolutions, model names), so those
fields list the known values and accept others of the same form, with a note.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from tools.catalog.base import CatalogEntry, FalInput, OpenChoice

UserPrompt = Annotated[str, Field(min_length=1, description="What should happen in the clip.")]
ExpandPrompt = Annotated[bool | None, Field(description="Let Luma enrich the prompt.")]
FirstFrame = Annotated[str | None, Field(description="First frame: URL or data URI.")]
LastFrame = Annotated[str | None, Field(description="Last frame: URL or data URI.")]
NotifyHook = Annotated[str | None, Field(description="URL called when the clip is ready.")]

# A Luma generation id is a UUID; a long decimal string is accepted too (some relays number their tasks).
_SOURCE_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9]{10,40}")


def _source_id(value: str) -> str:
    if _SOURCE_ID.fullmatch(value):
        return value
    raise PydanticCustomError(
        "source_request_id",
        "should be the request id of the finished Luma job to extend, as submit_fal_job returned it "
        "(a UUID such as '764cabcf-b745-4b3e-ae38-1200304cf45b')",
    )


class LumaGenerate(FalInput):
    user_prompt: UserPrompt
    model_name: Annotated[str | None, OpenChoice(("ray-v1", "ray-v2"), r"ray-v[0-9]+(-[a-z0-9]+)*")] = Field(
        None, description="Luma model version."
    )
    aspect_ratio: Annotated[
        str | None, OpenChoice(("16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "9:21"), r"[0-9]{1,2}:[0-9]{1,2}")
    ] = Field(None, description="Frame shape of the clip.")
    resolution: Annotated[str, OpenChoice(("720p", "1080p"), r"[0-9]{3,4}p|4k")] = Field(
        "720p", description="Output resolution."
    )
    duration: Annotated[str | None, OpenChoice(("5s", "9s"), r"[0-9]{1,2}s?")] = Field(
        None, description='Clip length as a string, e.g. "5s".'
    )
    loop: bool | None = Field(None, description="Make the clip loop seamlessly.")
    expand_prompt: ExpandPrompt = None
    image_url: FirstFrame = None
    image_end_url: LastFrame = None
    notify_hook: NotifyHook = None


class LumaExtend(FalInput):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "source_request_id": "764cabcf-b745-4b3e-ae38-1200304cf45b",
                    "user_prompt": "The camera keeps following the fox into the forest",
                }
            ]
        }
    )

    source_request_id: Annotated[str, AfterValidator(_source_id)] = Field(
        description="Request id of the Luma job to extend."
    )
    user_prompt: UserPrompt
    expand_prompt: ExpandPrompt = None
    image_url: FirstFrame = None
    image_end_url: LastFrame = None
    notify_hook: NotifyHook = None


# --- what a finished generation holds, read leniently ----------------------------------------------------------


class LumaImage(BaseModel):
    model_config = ConfigDict(extra="allow")

    url: str
    width: int | None = None
    height: int | None = None


class LumaVideo(LumaImage):
    download_url: str | None = None  # may be empty; the download-URL route gives a fresh link


class LumaGeneration(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    state: str | None = None  # pending/processing/completed/failed, or queued/dreaming/... on some relays
    prompt: str | None = None
    created_at: str | None = None
    video: LumaVideo
    thumbnail: LumaImage | None = None
    last_frame: LumaImage | None = None


ENTRIES: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        "luma/generations", "luma-ray", "text-to-video", LumaGenerate, LumaGeneration, "Luma (native route), generate"
    ),
    CatalogEntry(
        "luma/generations/extend",
        "luma-ray",
        "extend-video",
        LumaExtend,
        LumaGeneration,
        "Luma (native route), extend a clip",
    ),
)

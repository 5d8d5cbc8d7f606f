"""MCP prompts: ready-made instructions a user can pick in their client (e.g. a slash command)."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from server.settings import Settings

DEFAULT_IMAGE_MODEL = "fal-ai/kling-video/v2.1/standard/image-to-video"
DEFAULT_TEXT_MODEL = "fal-ai/kling-video/v2.5-turbo/pro/text-to-video"


def register_prompts(server: MCPServer[Any], settings: Settings) -> None:
    @server.prompt(
        name="create_video",
        title="Create a video",
        description="Walks the assistant through making a video: choose a model, submit, wait with progress, "
        "and hand back the result.",
    )
    def create_video(
        idea: Annotated[str, Field(description="What the video should show.")],
        image_path: Annotated[str | None, Field(description="Optional: a local image or image URL to animate.")] = None,
    ) -> str:
        return create_video_text(idea, image_path, settings.max_wait_seconds)


def create_video_text(idea: str, image_path: str | None, wait_seconds: float) -> str:
    model = DEFAULT_IMAGE_MODEL if image_path else DEFAULT_TEXT_MODEL
    image_step = (
        f"2. The clip starts from this image: {image_path}. Put it as is in the model's image field "
        "(image_url, or start_image_url for some models): a local path is uploaded for you. "
        "If it is refused, tell the user why.\n"
        if image_path
        else "2. There is no start image: use a text-to-video model.\n"
    )
    return (
        f"Make a short video of: {idea}\n\n"
        "Follow these steps with the fal tools:\n"
        f"1. Choose a model. Unless the user asked for another, use {model}. To compare options, call "
        "list_fal_models (task image-to-video or text-to-video) and describe_fal_model for its fields.\n"
        f"{image_step}"
        "3. Write a vivid prompt from the idea (subject, motion, camera, style), and call submit_fal_job with "
        "only the fields you need; fal's defaults apply to the rest. Each submit is a new, billed job: never "
        "submit the same video twice. If the input is refused, fix the named fields and submit again.\n"
        f"4. Call get_fal_result with the request_id and wait_seconds={wait_seconds:.0f}. While done is false, "
        "tell the user it is still in progress and call it again (video takes 1-5 minutes).\n"
        "5. When done, give the user the video URL(s) from media. If the job failed, explain the error in "
        "plain words and suggest a fix.\n"
        '6. If anything is unclear later ("where is my video?"), list_fal_jobs finds it.'
    )

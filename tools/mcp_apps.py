"""The MCP Apps face (extension `io.modelcontextprotocol/ui`): an inline job view that hosts such as Claude,
ChatGPT, VS Code and Goose render next to submit_fal_job, get_fal_result and list_fal_jobs.

The view is one self-contained HTML file (`tools/apps/job_view.html`, vanilla JS, no CDN) that speaks the
Apps protocol over postMessage and follows a job by calling the tools through the host. This module serves it
as `ui://` resource with the Content-Security-Policy that lets it play fal's media: without `resourceDomains`
a host allows only `'self' data:` media, and a remote `<video src>` is blocked. ChatGPT reads its own key for
the same lists (`openai/widgetCSP`).

Hosts without Apps ignore all of this and show the tools' text results, which stay complete.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mcp.server.apps import APP_MIME_TYPE, Apps, ResourceCsp
from mcp.server.mcpserver.resources import FunctionResource

from server.settings import Settings, is_loopback_host

JOB_VIEW_URI = "ui://fal-queue/job"
# What a tool carries to be shown in the view (`_meta` of submit_fal_job, get_fal_result, list_fal_jobs).
VIEW_META: dict[str, Any] = {"ui": {"resourceUri": JOB_VIEW_URI}}
VIEW_FILE = Path(__file__).parent / "apps" / "job_view.html"
# The view's settings travel in the HTML itself, in this element (read by the view's script at start).
CONFIG_SLOT = '<script id="fal-view-config" type="application/json">{}</script>'

# Origins fal serves outputs from (v3.fal.media, v3b.fal.media, ...). A wildcard does not cover the bare
# domain, so both are listed. fal's published model facts name no other media host (their only URLs are
# fal.ai documentation links).
FAL_MEDIA_ORIGINS = ("https://fal.media", "https://*.fal.media")


def media_origins(settings: Settings) -> list[str]:
    """Where the view may load media from: fal's CDN, plus a loopback upstream's own origin (the sandbox serves
    its sample files itself, so under `--sandbox` the demo plays too)."""
    origins = list(FAL_MEDIA_ORIGINS)
    parts = urlsplit(settings.base_url)
    if parts.hostname and is_loopback_host(parts.hostname):
        # Rebuilt from its parsed pieces, never copied: nothing but a host and a number may enter the policy.
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        origins.append(f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else ""))
    return origins


def resource_meta(settings: Settings) -> dict[str, Any]:
    """The view resource's `_meta`: the Apps CSP and ChatGPT's spelling of the same lists."""
    domains = media_origins(settings)
    # The view fetches nothing itself (every call goes through the host): no connect domains.
    csp = ResourceCsp(resource_domains=domains, connect_domains=[])
    return {
        "ui": {"csp": csp.model_dump(by_alias=True, exclude_none=True), "prefersBorder": True},
        "openai/widgetCSP": {"resource_domains": domains, "connect_domains": []},
    }


def view_config(settings: Settings) -> dict[str, Any]:
    """What the view needs from this server: its polling intervals, so the view never polls faster."""
    return {"pollFirstSeconds": settings.poll_first_interval, "pollMaxSeconds": settings.poll_max_interval}


def render_view(config: dict[str, Any]) -> str:
    """The view's HTML with this server's settings filled in."""
    # Only numbers go in; `</` is escaped anyway so nothing can close the script element early.
    filled = json.dumps(config, separators=(",", ":")).replace("</", "<\\/")
    return _template().replace(CONFIG_SLOT, CONFIG_SLOT.replace("{}", filled), 1)


@functools.cache
def _template() -> str:
    text = VIEW_FILE.read_text(encoding="utf-8")
    if CONFIG_SLOT not in text:
        raise RuntimeError(f"{VIEW_FILE.name} lost its config slot {CONFIG_SLOT!r}")
    return text


def build_apps(settings: Settings) -> Apps:
    """The Apps extension with the job view, for `MCPServer(extensions=[...])` (it also advertises the
    extension in the server's capabilities)."""
    apps = Apps()
    config = view_config(settings)
    apps.add_resource(
        # Read from the package on the first resources/read (in a worker thread), not at start-up.
        FunctionResource(
            uri=JOB_VIEW_URI,
            name="fal-job-view",
            title="fal job viewer",
            description="Inline view of a fal job (progress, player, cancel) or of the recent jobs.",
            mime_type=APP_MIME_TYPE,
            meta=resource_meta(settings),
            fn=lambda: render_view(config),
        )
    )
    return apps

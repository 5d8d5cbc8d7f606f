"""fal storage's two upload endpoints (and a file server) for the sandbox upstream, so uploads are tested offline.

`POST /storage/auth/token` trades `Authorization: Key <key>` for a token; `POST /files/upload` takes the bytes
with `Authorization: Bearer <token>` and answers an `access_url` served by `GET /storage/files/{name}`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}$")


def storage_routes(key: str, files: dict[str, tuple[bytes, str]], base_url: Callable[[], str]) -> list[Route]:
    """Routes for fal storage; uploads land in `files` (name -> (bytes, content type)); mount before catch-alls."""
    issued: set[str] = set()

    async def token(request: Request) -> Response:
        if request.headers.get("authorization") != f"Key {key}":
            return JSONResponse({"detail": "Invalid API key"}, status_code=401)
        if request.query_params.get("storage_type") != "fal-cdn-v3":
            return JSONResponse({"detail": "Unsupported storage_type"}, status_code=400)
        value = secrets.token_urlsafe(24)
        issued.add(value)
        return JSONResponse({"token": value, "token_type": "Bearer", "base_url": base_url()})

    async def upload(request: Request) -> Response:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or value not in issued:
            return JSONResponse({"detail": "Invalid or expired upload token"}, status_code=401)
        content_type = request.headers.get("content-type", "application/octet-stream")
        suffix = _SUFFIX.search(request.headers.get("x-fal-file-name", ""))
        name = secrets.token_hex(12) + (suffix.group(0).lower() if suffix else "")
        files[name] = (await request.body(), content_type)
        return JSONResponse({"access_url": f"{base_url()}/storage/files/{name}", "content_type": content_type})

    async def serve(request: Request) -> Response:
        stored = files.get(request.path_params["name"])
        if stored is None:
            return JSONResponse({"detail": "File not found"}, status_code=404)
        data, content_type = stored
        return Response(data, media_type=content_type, headers={"X-Content-Type-Options": "nosniff"})

    return [
        Route("/storage/auth/token", token, methods=["POST"]),
        Route("/files/upload", upload, methods=["POST"]),
        Route("/storage/files/{name}", serve, methods=["GET"]),
    ]

"""Uploading a local media file to fal storage, so a model can be given its URL.

Protocol-free (no MCP here). Two calls: the fal key buys a short-lived upload token from the token host, then
the bytes go to the upload host with only that token. The fal key is never sent to the upload host, which may
come from the token answer: that host is used only when it is https (or http on loopback). Redirects are not
followed, answers are read up to a small cap (decoded bytes, see server.upstream.bodies), and no message quotes the
key or the token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx

from server.errors import (
    AuthError,
    BadResponseError,
    MissingKeyError,
    RateLimitedError,
    UpstreamUnavailableError,
    describe_detail,
    redact,
)
from server.files.local import FileRefusedError, LocalMedia
from server.files.sniff import EXTENSIONS
from server.settings import is_loopback_host, where_to_set
from server.upstream.bodies import BodyError, BodyTooLarge, read_decoded
from server.upstream.responses import parse_json

STORAGE_TYPE = "fal-cdn-v3"
ANSWER_LIMIT = 64 * 1024  # both answers are small JSON objects
DEFAULT_ANSWER_TIMEOUT = 20.0  # seconds for a whole answer; callers pass FAL_MCP_REQUEST_TIMEOUT
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~+/=-]+")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class _Token:
    token: str
    token_type: str
    base_url: str | None


class FalStorageClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        token_base: str,
        upload_base: str | None,
        fal_key: str,
        answer_timeout: float = DEFAULT_ANSWER_TIMEOUT,
    ) -> None:
        checked = safe_base(token_base)
        if checked is None:
            raise ValueError("token_base must be an https URL (or http on a loopback host)")
        self._http = http
        self._token_base = checked
        self._upload_base = safe_base(upload_base) if upload_base else None
        if upload_base and self._upload_base is None:
            raise ValueError("upload_base must be an https URL (or http on a loopback host)")
        self._fal_key = fal_key
        self._answer_timeout = answer_timeout  # the whole answer, not each read: a trickling body must not hang a call

    async def upload(self, media: LocalMedia) -> str:
        """Upload the bytes and return the file's access_url (http or https)."""
        token = await self._token()
        base = self._upload_base or token.base_url
        if base is None:
            raise BadResponseError(
                "fal storage did not say where to upload (no usable https base_url in its token answer), so the "
                "file was not sent. Set FAL_MCP_STORAGE_UPLOAD_BASE (for example https://v3.fal.media) and retry."
            )
        request = self._http.build_request(
            "POST",
            f"{base}/files/upload",
            content=media.data,
            headers={
                "Authorization": f"{token.token_type} {token.token}",  # the short-lived token, never the fal key
                "Content-Type": media.mime,
                "X-Fal-File-Name": safe_file_name(media),
            },
        )
        body = await self._send(request, action="the upload", secrets=(token.token,))
        url = body.get("access_url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("https", "http") or not parts.hostname:
            raise BadResponseError(
                "fal storage accepted the upload but did not return a usable access_url; try again, or upload "
                "the file elsewhere and pass its http(s) URL."
            )
        if redact(str(url), self._fal_key) != url or redact(str(url), token.token) != url:
            # An upload URL goes into the job input, the ledger and the answer: it must not carry a credential.
            raise BadResponseError(
                "fal storage returned an access_url that contains a credential, so it was not used; try again, or "
                "upload the file elsewhere and pass its http(s) URL."
            )
        return str(url)

    async def _token(self) -> _Token:
        if not self._fal_key:
            raise MissingKeyError(
                "Uploading a local file needs a fal key (a UniAPI token cannot upload to fal storage): pass an "
                "http(s) URL of the file instead, or give the server a fal key. " + where_to_set("FAL_KEY")
            )
        request = self._http.build_request(
            "POST",
            f"{self._token_base}/storage/auth/token",
            params={"storage_type": STORAGE_TYPE},
            json={},
            headers={"Authorization": f"Key {self._fal_key}"},
        )
        body = await self._send(request, action="the storage token request", secrets=())
        token, token_type = body.get("token"), body.get("token_type") or "Bearer"
        if not (isinstance(token, str) and _TOKEN_CHARS.fullmatch(token)) or not (
            isinstance(token_type, str) and token_type.isalpha()
        ):
            raise BadResponseError("fal storage answered the token request without a usable token; try again later.")
        raw_base = body.get("base_url")
        return _Token(token, token_type, safe_base(raw_base) if isinstance(raw_base, str) else None)

    async def _send(self, request: httpx.Request, *, action: str, secrets: tuple[str, ...]) -> dict[str, Any]:
        host = request.url.host
        try:
            response = await self._http.send(request, stream=True, follow_redirects=False)
        except httpx.TimeoutException:
            raise UpstreamUnavailableError(
                f"fal storage ({host}) did not answer {action} in time; try again."
            ) from None
        except httpx.TransportError as exc:
            raise UpstreamUnavailableError(
                f"Could not reach fal storage at {host} for {action} ({type(exc).__name__}); check the network "
                "and try again."
            ) from None
        content = b""
        try:
            with anyio.move_on_after(self._answer_timeout) as reading:
                content = await read_decoded(response, ANSWER_LIMIT)
            if reading.cancelled_caught:
                raise UpstreamUnavailableError(f"fal storage's answer to {action} came too slowly; try again.")
        except BodyTooLarge:
            raise BadResponseError(f"fal storage's answer to {action} was unexpectedly large; try again.") from None
        except BodyError as exc:
            raise BadResponseError(f"fal storage's answer to {action} was {exc.reason}; try again later.") from None
        except httpx.HTTPError as exc:
            raise UpstreamUnavailableError(
                f"fal storage's answer to {action} was cut off ({type(exc).__name__}); try again."
            ) from None
        finally:
            await response.aclose()
        body = _json_object(content)
        code = response.status_code
        if 200 <= code < 300:
            if body is None:
                raise BadResponseError(f"fal storage's answer to {action} was not a JSON object; try again later.")
            return body
        detail = self._detail(body, code, secrets)
        if code in (401, 403):
            raise AuthError(
                f"fal storage refused {action} (HTTP {code}: {detail}). Check that FAL_KEY is a valid fal key; a "
                "UniAPI token cannot upload to fal storage.",
                status_code=code,
            )
        if code == 413:
            raise FileRefusedError(
                "fal storage refused the file as too large (HTTP 413). Upload it somewhere that gives a public "
                "link and pass that http(s) URL instead.",
                status_code=code,
            )
        if code == 429:
            raise RateLimitedError("fal storage is rate limiting uploads (HTTP 429); try again in a minute.")
        if code >= 500:
            raise UpstreamUnavailableError(
                f"fal storage failed on {action} (HTTP {code}: {detail}); try again in a minute.", status_code=code
            )
        if 300 <= code < 400:
            raise BadResponseError(
                f"fal storage answered {action} with a redirect (HTTP {code}), which is not followed; check "
                "FAL_MCP_STORAGE_TOKEN_BASE and FAL_MCP_STORAGE_UPLOAD_BASE.",
                status_code=code,
            )
        raise BadResponseError(f"fal storage refused {action} (HTTP {code}: {detail}).", status_code=code)

    def _detail(self, body: dict[str, Any] | None, code: int, secrets: tuple[str, ...]) -> str:
        text = describe_detail(body.get("detail", body), limit=300) if body is not None else f"HTTP {code}"
        for secret in (self._fal_key, *secrets):
            text = redact(text, secret)
        return text


def safe_base(url: str | None) -> str | None:
    """The URL without its trailing slash if it may carry credentials: https, or http on a loopback host."""
    if not url:
        return None
    parts = urlsplit(url)
    if not parts.hostname or parts.username or parts.password or parts.query or parts.fragment:
        return None
    if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback_host(parts.hostname)):
        return None
    return url.rstrip("/")


def safe_file_name(media: LocalMedia) -> str:
    """An ASCII name for the upload: the file's stem, cleaned, with the extension of its sniffed type."""
    stem = _NAME_CHARS.sub("_", media.path.stem).strip("._")[:80] or "upload"
    return stem + EXTENSIONS.get(media.mime, "")


def _json_object(content: bytes) -> dict[str, Any] | None:
    value = parse_json(content)
    return value if isinstance(value, dict) else None

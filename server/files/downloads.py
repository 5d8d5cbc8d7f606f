"""Saving a finished job's output media files to disk, safely.

Protocol-free (no MCP here). A media URL comes out of a job's result, which a prompt or an upstream can steer,
so it is treated as hostile: only http(s); the host name is resolved once and every address it resolves to must
be public (never private, link-local (cloud metadata), multicast, reserved or unspecified; loopback only when
the caller allows it); the connection then goes to one of those checked addresses, with the Host header and the
TLS server name kept, so a second lookup (DNS rebinding) cannot lead elsewhere. At most 3 redirects, each one
resolved and checked the same way. The request carries only Accept, Accept-Encoding and User-Agent: never the
API key or a cookie, whatever the shared client's defaults. The body streams to a hidden temporary file in the
target folder, capped in size and time and hashed on the way, is fsynced, then published under a sanitised name
that never replaces a different file. A message never quotes a header value and quotes at most a short body
excerpt.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread
import httpx

from server.errors import DownloadError
from server.files.disk import create_temporary, discard, ensure_directory, publish, remove_stale_parts
from server.files.names import media_type, safe_file_name
from server.files.url_safety import (
    AddressRefused,
    IPAddress,
    Resolver,
    checked_addresses,
    refusal,
    system_resolver,
)

MAX_REDIRECTS = 3
# A ".part" file untouched for longer than any download may take (FAL_MCP_DOWNLOAD_TIMEOUT is capped at an hour)
# is left over from an interrupted one (a killed process): removed when the folder is next used.
STALE_PART_SECONDS = 2 * 3600.0
WRITE_BYTES = 1024 * 1024  # network chunks are gathered up to this before each write (one thread hop per MiB)
STALL_SECONDS = 30.0  # a connection that stays silent this long fails even when the overall budget remains
EXCERPT_CHARS = 80
# Exactly these headers go out. Accept-Encoding: identity because without it any coding is acceptable (RFC
# 9110), and a compressed body could expand far past the size cap in memory before a single byte is counted.
REQUEST_HEADERS = {"Accept": "*/*", "Accept-Encoding": "identity", "User-Agent": "fal-queue-mcp/0.1"}

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class SavedFile:
    url: str  # the URL asked for, not where redirects led
    path: Path
    size: int
    sha256: str
    content_type: str | None


@dataclass(frozen=True)
class DownloadLimits:
    max_bytes: int
    timeout_seconds: float  # the whole download: every redirect, the body and the final fsync
    allow_loopback: bool  # set only when the caller's own upstream is a loopback sandbox

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or not self.timeout_seconds > 0:
            raise ValueError("max_bytes and timeout_seconds must be positive")


async def download_media(
    http: httpx.AsyncClient,
    url: str,
    *,
    directory: Path,
    request_id: str,
    suggested_name: str | None,
    content_type: str | None,
    limits: DownloadLimits,
    resolve: Resolver | None = None,
) -> SavedFile:
    """Download `url` into `directory` and return where it was saved, or raise DownloadError.

    On any failure or cancellation no file exists under the final name and the temporary file is gone. Once the
    file is published (the last step) the download is complete, even if a cancellation arrives just after.
    `resolve` turns host names into addresses (default: the system resolver; a test may map a name to
    127.0.0.1 with it).
    """
    target = _checked_url(url, allow_loopback=limits.allow_loopback)
    where = _host_of(target)
    try:
        with anyio.fail_after(limits.timeout_seconds):
            await anyio.to_thread.run_sync(ensure_directory, directory)
            await anyio.to_thread.run_sync(remove_stale_parts, directory, time.time() - STALE_PART_SECONDS)
            response = await _open(http, target, limits, where, resolve or system_resolver)
            try:
                return await _save(
                    response,
                    url=url,
                    directory=directory,
                    request_id=request_id,
                    suggested_name=suggested_name,
                    content_type=content_type,
                    limits=limits,
                    where=where,
                )
            finally:
                # Shielded: under cancellation an unshielded await would be interrupted and leak the connection.
                with anyio.move_on_after(5, shield=True):
                    await response.aclose()
    except TimeoutError:
        raise DownloadError(
            f"Downloading from {where} took longer than the {limits.timeout_seconds:g}-second limit, so it was "
            "stopped and nothing was saved. Try again, or raise the download time limit."
        ) from None


# ---- URL checks ---------------------------------------------------------------------------------------------


def _checked_url(url: str, *, allow_loopback: bool) -> httpx.URL:
    """The URL as httpx will send it (so the check and the request cannot parse it differently), or refused."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise DownloadError(
            "The media URL could not be read as a URL, so nothing was downloaded; pass the http(s) URL exactly "
            "as the job result gives it."
        ) from None
    reason = refusal(parsed, allow_loopback=allow_loopback)
    if reason is not None:
        raise _refused(reason)
    return parsed


def _refused(reason: str) -> DownloadError:
    return DownloadError(
        f"The media URL was not downloaded: {reason}. Only http(s) links to public hosts are fetched; nothing was sent."
    )


def _redirect_refused(where: str, reason: str) -> DownloadError:
    # The target is not quoted: it is a header value chosen by the media host.
    return DownloadError(
        f"{where} redirected the download to a refused location ({reason}), so it was not followed and nothing "
        "was saved."
    )


def _host_of(url: httpx.URL) -> str:
    """The host, for messages: ASCII (punycode for international names), short."""
    host = url.raw_host.decode("ascii", "replace")
    shown = f"[{host}]" if ":" in host else host
    return re.sub(r"[^A-Za-z0-9.:\[\]-]", "", shown)[:80] or "the media host"


# ---- HTTP -----------------------------------------------------------------------------------------------------


async def _open(
    http: httpx.AsyncClient, url: httpx.URL, limits: DownloadLimits, where: str, resolve: Resolver
) -> httpx.Response:
    """Send the GET, following at most MAX_REDIRECTS redirects by hand, each target checked like the first URL."""
    timeout = httpx.Timeout(min(limits.timeout_seconds, STALL_SECONDS))
    for hop in range(MAX_REDIRECTS + 1):
        try:
            addresses = await checked_addresses(url, allow_loopback=limits.allow_loopback, resolve=resolve)
        except AddressRefused as exc:
            raise (_refused(str(exc)) if hop == 0 else _redirect_refused(where, str(exc))) from None
        response = await _send_pinned(http, url, addresses, timeout, where)
        if response.status_code not in _REDIRECTS:
            return response
        location = response.headers.get("location")
        with anyio.move_on_after(5, shield=True):
            await response.aclose()
        if hop == MAX_REDIRECTS:
            raise DownloadError(
                f"{where} redirected more than {MAX_REDIRECTS} times, so the download was stopped and nothing was "
                "saved."
            )
        try:
            url = url.join(location) if location else httpx.URL()
        except (httpx.InvalidURL, ValueError):
            url = httpx.URL()
        if not url.scheme:
            raise DownloadError(f"{where} answered with a redirect that has no usable target; nothing was saved.")
        reason = refusal(url, allow_loopback=limits.allow_loopback)
        if reason is not None:
            raise _redirect_refused(where, reason)
    raise AssertionError("unreachable")  # the loop returns or raises


async def _send_pinned(
    http: httpx.AsyncClient, url: httpx.URL, addresses: list[IPAddress], stall: httpx.Timeout, where: str
) -> httpx.Response:
    """GET `url` from the first checked address that takes the connection (the next one only when connecting
    failed, e.g. IPv6 on a machine without an IPv6 route). The connection goes to that very address, never to a
    fresh lookup; the Host header and the TLS server name (checked against the certificate) stay the URL's."""
    headers = {**REQUEST_HEADERS, "Host": url.netloc.decode("ascii")}
    server_name = url.raw_host.decode("ascii")
    for index, address in enumerate(addresses):
        # Built directly, not with http.build_request: that would merge the client's default headers and cookies.
        request = httpx.Request(
            "GET",
            url.copy_with(host=str(address)),
            headers=headers,
            extensions={"timeout": stall.as_dict(), "sni_hostname": server_name},
        )
        try:
            # auth=None: a client-level auth must not apply to a media host either.
            return await http.send(request, stream=True, follow_redirects=False, auth=None)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            if index + 1 < len(addresses):
                continue  # nothing was sent: the next checked address may answer
            if isinstance(exc, httpx.ConnectTimeout):
                raise DownloadError(f"{where} did not answer in time, so nothing was saved; try again.") from None
            raise DownloadError(
                f"Could not reach {where} ({type(exc).__name__}), so nothing was saved; check the network and "
                "try again."
            ) from None
        except httpx.TimeoutException:
            raise DownloadError(f"{where} did not answer in time, so nothing was saved; try again.") from None
        except httpx.HTTPError as exc:
            raise DownloadError(
                f"Could not reach {where} ({type(exc).__name__}), so nothing was saved; check the network and "
                "try again."
            ) from None
    raise AssertionError("unreachable")  # checked_addresses never returns an empty list


async def _save(
    response: httpx.Response,
    *,
    url: str,
    directory: Path,
    request_id: str,
    suggested_name: str | None,
    content_type: str | None,
    limits: DownloadLimits,
    where: str,
) -> SavedFile:
    code = response.status_code
    if code != 200:
        raise _status_error(code, where, await _excerpt(response))
    if _is_encoded(response):
        raise DownloadError(
            f"{where} sent the file compressed although it was asked not to; it was not saved. Try again, or "
            "download it another way."
        )
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        raise _too_large(where, limits.max_bytes)

    kind = media_type(content_type) or media_type(response.headers.get("content-type"))
    name = safe_file_name(request_id, url, suggested_name, kind)
    try:
        file, temporary = await anyio.to_thread.run_sync(create_temporary, directory)
        published: Path | None = None
        try:
            size, sha256 = await _stream_into(file, response, limits, where)
            published = await anyio.to_thread.run_sync(publish, file, temporary, directory, name, sha256, size)
        finally:
            if published is None:
                discard(file, temporary)
    except OSError as exc:
        raise DownloadError(
            f"Could not write the file into {directory} ({exc.strerror or type(exc).__name__}), so nothing was "
            "saved; check that the folder is writable and has free space."
        ) from None
    return SavedFile(url=url, path=published, size=size, sha256=sha256, content_type=kind)


async def _stream_into(
    file: io.BufferedWriter, response: httpx.Response, limits: DownloadLimits, where: str
) -> tuple[int, str]:
    """Write the body into `file` (not yet flushed) and return its size and sha256; refused past the size cap."""
    digest, size, pending = hashlib.sha256(), 0, bytearray()

    async def take(chunk: bytes) -> None:
        nonlocal size
        size += len(chunk)
        if size > limits.max_bytes:
            raise _too_large(where, limits.max_bytes)
        digest.update(chunk)
        pending.extend(chunk)
        if len(pending) >= WRITE_BYTES:
            await anyio.to_thread.run_sync(file.write, pending)
            pending.clear()

    try:
        if response.is_stream_consumed:  # only a test transport answers with the body already read
            await take(response.content)
        else:
            async for chunk in response.aiter_raw():  # raw: the bytes as sent, so the cap counts what is written
                await take(chunk)
    except httpx.TimeoutException:
        raise DownloadError(
            f"The download from {where} stalled, so it was stopped and nothing was saved; try again."
        ) from None
    except httpx.HTTPError as exc:
        raise DownloadError(
            f"The download from {where} was cut off ({type(exc).__name__}), so nothing was saved; try again."
        ) from None
    await anyio.to_thread.run_sync(file.write, pending)
    return size, digest.hexdigest()


async def _excerpt(response: httpx.Response) -> str:
    """A short, single-line excerpt of a plain-text or JSON error body, or ""."""
    kind = media_type(response.headers.get("content-type")) or ""
    if not (kind == "text/plain" or kind.endswith("json")) or _is_encoded(response):
        return ""  # compressed bytes are no excerpt worth quoting, and are never inflated here
    wanted = 4 * EXCERPT_CHARS
    if response.is_stream_consumed:  # only a test transport answers with the body already read
        raw = bytearray(response.content[:wanted])
    else:
        raw = bytearray()
        with contextlib.suppress(httpx.HTTPError):
            async for chunk in response.aiter_raw():
                raw += chunk
                if len(raw) >= wanted:
                    break
    text = " ".join("".join(c for c in raw.decode("utf-8", "replace") if c.isprintable()).split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def _is_encoded(response: httpx.Response) -> bool:
    """Whether the body comes compressed (in any coding, however many times over): it is then never inflated, so
    no compression bomb can expand in memory or on disk."""
    coding: str = response.headers.get("content-encoding", "identity")
    return coding.strip().lower() != "identity"


def _status_error(code: int, where: str, excerpt: str) -> DownloadError:
    said = f": {excerpt}" if excerpt else ""
    if code in (404, 410):
        advice = "the file may have expired (fal keeps outputs for a limited time); re-run the job for a new one"
    elif code in (401, 403):
        advice = "the link may have expired or need a signature; get a fresh result and try again"
    elif code == 429 or code >= 500:
        advice = "try again in a minute"
    else:
        advice = "check that the URL is the one the job result gives"
    return DownloadError(
        f"{where} answered HTTP {code}{said} instead of the file; nothing was saved: {advice}.", status_code=code
    )


def _too_large(where: str, max_bytes: int) -> DownloadError:
    return DownloadError(
        f"The file at {where} is larger than the {max_bytes:,}-byte download limit, so it was not saved. Raise the "
        "limit, or open the URL directly."
    )


# ---- names ----------------------------------------------------------------------------------------------------

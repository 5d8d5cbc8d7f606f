"""One bounded GET of a small JSON answer (prices, balances): a time limit, a size limit, no compression, and
every failure one exception whose message says what happened (never the key, which travels in a header)."""

from __future__ import annotations

from typing import Any

import httpx


class SmallJsonUnavailable(Exception):
    pass


async def get_small_json(
    http: httpx.AsyncClient,
    url: str,
    *,
    params: list[tuple[str, str | int | float | bool | None]],
    headers: dict[str, str],
    seconds: float,
    max_bytes: int,
    what: str,
) -> Any:
    request = http.build_request(
        "GET",
        url,
        params=params,
        headers={**headers, "Accept": "application/json", "Accept-Encoding": "identity"},
        timeout=httpx.Timeout(seconds),
    )
    try:
        response = await http.send(request, stream=True)
        try:
            if response.status_code != 200:
                raise SmallJsonUnavailable(f"{what} answered HTTP {response.status_code}")
            if response.headers.get("content-encoding", "identity").lower() != "identity":
                raise SmallJsonUnavailable(f"{what} answered compressed, which was not asked for")
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > max_bytes:
                    raise SmallJsonUnavailable(f"{what}'s answer was over {max_bytes} bytes")
        finally:
            await response.aclose()
    except httpx.HTTPError as exc:
        raise SmallJsonUnavailable(f"{what} could not be reached ({type(exc).__name__})") from None
    try:
        return httpx.Response(200, content=bytes(body)).json()
    except ValueError:
        raise SmallJsonUnavailable(f"{what}'s answer was not JSON") from None

"""One bounded GET of a small JSON answer (prices, balances): a time limit, a size limit counted in decoded bytes
(`server.upstream.bodies`, as every upstream read), and every failure one exception whose message says what happened
(never the key, which travels in a header)."""

from __future__ import annotations

from typing import Any

import httpx

from server.upstream.bodies import ACCEPT_ENCODING, BodyError, read_decoded


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
        headers={**headers, "Accept": "application/json", "Accept-Encoding": ACCEPT_ENCODING},
        timeout=httpx.Timeout(seconds),
    )
    try:
        response = await http.send(request, stream=True)
        try:
            if response.status_code != 200:
                raise SmallJsonUnavailable(f"{what} answered HTTP {response.status_code}")
            body = await read_decoded(response, max_bytes)
        except BodyError as exc:
            raise SmallJsonUnavailable(f"{what}'s answer was {exc.reason}") from None
        finally:
            await response.aclose()
    except httpx.HTTPError as exc:
        raise SmallJsonUnavailable(f"{what} could not be reached ({type(exc).__name__})") from None
    try:
        return httpx.Response(200, content=body).json()
    except ValueError:
        raise SmallJsonUnavailable(f"{what}'s answer was not JSON") from None

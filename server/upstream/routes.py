"""One adapter per route family behind one small interface, and the registry that picks it by model id.

A model id is the path after the base URL, and its first segment names the family: `kling/...` is UniAPI's native
Kling route, `luma/...` its Luma route, anything else the fal queue route (`fal-ai/...`). Everything above this
module (jobs, ledger, waits, tools) is family-blind: it calls `Upstream` with a model id, and the adapter of that
id's family does the work. Adapters are imported on first use, so a start loads none of them.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any, Protocol

from server.errors import InvalidRequestError
from server.upstream.ids import Family, route_family_of
from server.upstream.reports import CancelOutcome, ResultReport, StatusReport, SubmitReceipt

if TYPE_CHECKING:
    import httpx

    from server.errors import FalError
    from server.settings import Settings
    from server.upstream.client import UpstreamClient
    from server.upstream.fal_queue import FalQueueAdapter
    from server.upstream.kling import KlingAdapter
    from server.upstream.luma import LumaAdapter
    from server.upstream.outputs import MediaFile


class RouteAdapter(Protocol):
    """What every route family does. Request ids are plain tokens (`ids.validate_request_id`) on every route."""

    family: Family
    can_cancel: bool
    # Whether the family has a status stream: None until tried, False when it has none (then waits poll).
    stream_supported: bool | None

    async def submit(self, model_id: str, body: dict[str, Any]) -> SubmitReceipt: ...

    async def status(
        self,
        model_id: str,
        request_id: str,
        *,
        with_logs: bool = True,
        on_retry: Callable[[FalError], None] | None = None,
    ) -> StatusReport: ...

    async def result(self, model_id: str, request_id: str) -> ResultReport:
        """The finished job's output (its media objects carry `url` and `content_type`), None while it runs; a
        failed job raises `JobFailedError` with the upstream's reason."""
        ...

    async def cancel(self, model_id: str, request_id: str) -> CancelOutcome:
        """Cancel, or raise `CancelUnsupportedError` saying plainly that the route has none (nothing is sent)."""
        ...

    def status_stream(self, model_id: str, request_id: str) -> AsyncGenerator[StatusReport, None]: ...

    def media(self, output: dict[str, Any]) -> list[MediaFile]:
        """The media files of a finished job's output, in order, with their MIME types."""
        ...


NATIVE_NEEDS_UNIAPI = (
    "The model {model!r} is on UniAPI's native {title} route, which exists only through UniAPI; this server is "
    "configured for fal directly (FAL_KEY), so nothing was sent. Use the fal route of the same model (see "
    "list_fal_models, e.g. 'fal-ai/kling-video/v2.1/standard/image-to-video' or 'fal-ai/luma-dream-machine'), or "
    "set UNIAPI_KEY to use UniAPI."
)
_TITLES: dict[Family, str] = {"fal": "fal queue", "kling": "Kling", "luma": "Luma"}


class Upstream:
    """The running server's upstream: one transport (`client`) and, made on first use, one adapter per family."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        from server.upstream.client import UpstreamClient

        self.client: UpstreamClient = UpstreamClient(settings, http)
        self._adapters: dict[Family, RouteAdapter] = {}

    @property
    def http(self) -> httpx.AsyncClient:
        return self.client.http

    @property
    def settings(self) -> Settings:
        return self.client.settings

    def adapter(self, model_id: str) -> RouteAdapter:
        """The adapter of the model id's family; a native model id with fal direct is refused, nothing sent."""
        family = route_family_of(model_id)
        if family != "fal" and self.settings.provider != "uniapi":
            raise InvalidRequestError(NATIVE_NEEDS_UNIAPI.format(model=model_id, title=_TITLES[family]))
        return self.family(family)

    def family(self, family: Family) -> RouteAdapter:
        adapter = self._adapters.get(family)
        if adapter is None:
            adapter = self._adapters[family] = _make(family, self.client)
        return adapter

    # ---- the interface, dispatched by model id ----------------------------------------------------------------

    async def submit(self, model_id: str, body: dict[str, Any]) -> SubmitReceipt:
        return await self.adapter(model_id).submit(model_id, body)

    async def status(
        self,
        model_id: str,
        request_id: str,
        *,
        with_logs: bool = True,
        on_retry: Callable[[FalError], None] | None = None,
    ) -> StatusReport:
        return await self.adapter(model_id).status(model_id, request_id, with_logs=with_logs, on_retry=on_retry)

    async def result(self, model_id: str, request_id: str) -> ResultReport:
        return await self.adapter(model_id).result(model_id, request_id)

    async def cancel(self, model_id: str, request_id: str) -> CancelOutcome:
        return await self.adapter(model_id).cancel(model_id, request_id)

    def media(self, model_id: str, output: dict[str, Any]) -> list[MediaFile]:
        return media_of(model_id, output)


def media_of(model_id: str, output: dict[str, Any]) -> list[MediaFile]:
    """The media of a finished job's output, as its family's adapter reads them: a kept result too, so no adapter is
    made (no HTTP client, no provider check) and nothing is sent."""
    return _adapter_class(route_family_of(model_id)).media(output)


def _make(family: Family, client: UpstreamClient) -> RouteAdapter:
    adapter: RouteAdapter = _adapter_class(family)(client)
    return adapter


def _adapter_class(family: Family) -> type[FalQueueAdapter | KlingAdapter | LumaAdapter]:
    """The family's adapter class, its module imported on first use."""
    if family == "kling":
        from server.upstream.kling import KlingAdapter

        return KlingAdapter
    if family == "luma":
        from server.upstream.luma import LumaAdapter

        return LumaAdapter
    from server.upstream.fal_queue import FalQueueAdapter

    return FalQueueAdapter

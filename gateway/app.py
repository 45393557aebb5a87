"""The Starlette application: routes, and the lifespan that makes the long-lived parts once."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from gateway import cache
from gateway.cache import CacheStats, CacheStore
from gateway.clusters import ClusterService
from gateway.config import Settings
from gateway.demo import DEMO_CREDENTIALS, DEMO_REGION, running_emulator
from gateway.graphql.context import GatewayContext
from gateway.graphql.schema import build_schema
from gateway.pcs.client import PcsClient

log = logging.getLogger(__name__)


@dataclass
class GatewayState:
    """The long-lived parts, made in the lifespan and handed to each request."""

    settings: Settings
    stats: CacheStats = field(default_factory=CacheStats)
    service: ClusterService | None = None
    store: CacheStore | None = None
    ready: bool = False
    draining: bool = False
    demo_endpoint: str | None = None


class GraphQLEndpoint(GraphQL[GatewayContext, None]):
    """Strawberry's ASGI view, with the gateway's context and a fast JSON encoder."""

    def __init__(self, state: GatewayState, **kwargs: Any) -> None:
        super().__init__(build_schema(), **kwargs)
        self.state = state

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> GatewayContext:
        if self.state.service is None:
            raise RuntimeError("the gateway is not started")
        return GatewayContext(
            service=self.state.service,
            settings=self.state.settings,
            request=request,
            response=response,
        )

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)


def create_app(settings: Settings) -> Starlette:
    """The gateway as an ASGI application."""
    state = GatewayState(settings=settings)
    graphql = GraphQLEndpoint(
        state,
        graphql_ide="graphiql" if settings.graphiql_enabled else None,
        allow_queries_via_get=True,
    )

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        checks: dict[str, str] = {}
        if state.store is not None:
            checks["cache"] = "ok" if await state.store.ping() else "degraded"
        checks["pcsClient"] = "ok" if state.service is not None else "missing"
        serving = state.ready and not state.draining and state.service is not None
        body = {"status": "ready" if serving else "unavailable", "checks": checks}
        if state.draining:
            body["status"] = "draining"
        return JSONResponse(body, status_code=200 if serving else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            endpoint_url = None
            credentials: dict[str, str] = {}
            if settings.demo:
                endpoint_url = await stack.enter_async_context(running_emulator())
                state.demo_endpoint = endpoint_url
                credentials = DEMO_CREDENTIALS
            backend = cache.make_backend(settings, state.stats)
            store = CacheStore(backend, name=cache.describe(settings), stats=state.stats)
            stack.push_async_callback(store.close)
            client = await stack.enter_async_context(
                PcsClient.open(
                    settings,
                    endpoint_url=endpoint_url,
                    region_name=DEMO_REGION if settings.demo else None,
                    credentials=credentials,
                )
            )
            state.store = store
            state.service = ClusterService(client, store, settings, state.stats)
            state.ready = True
            log.info(
                "gateway ready: PCS at %s, cache %s%s",
                client.endpoint,
                store.name,
                " (demo emulator)" if settings.demo else "",
            )
            try:
                yield
            finally:
                state.ready = False
                state.draining = True

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.gateway = state
    return app


__all__ = ["GatewayState", "create_app", "orjson"]

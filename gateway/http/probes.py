"""The routes beside GraphQL: liveness, readiness, metrics and GraphiQL's files."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from gateway.http.state import GatewayState
from gateway.observe.metrics import CONTENT_TYPE
from gateway.pcs.rate_budget import SharedBudget


async def healthz(request: Request) -> Response:
    """Liveness: the process answers."""
    return PlainTextResponse("ok")


def probe_routes(state: GatewayState) -> list[Route]:
    """`/healthz`, `/readyz`, `/metrics` and `/graphql/assets/...`, reading `state`.

    `/readyz` reports `pcsBreaker` (the default region's) and `pcsBreakers` (each region's).
    """

    async def readyz(request: Request) -> Response:
        checks: dict[str, str | dict[str, str]] = {}
        if state.store is not None:
            checks["cache"] = "ok" if await state.store.ping() else "degraded"
        checks["pcsClient"] = "ok" if state.service is not None else "missing"
        coordination = state.coordination
        if coordination is not None:
            # Degraded, never 503: each replica then polls and keeps to its share alone.
            checks["coordination"] = "ok" if coordination.channels.connected else "degraded"
        if state.client is not None and isinstance(state.client.limiter, SharedBudget):
            checks["rateBudget"] = "shared" if state.client.limiter.is_shared else "degraded"
        if state.client is not None and state.client.breaker is not None:
            # Reported, never a reason for 503: a PCS outage must not pull every replica.
            checks["pcsBreaker"] = state.client.breaker.state.value
        if state.regions is not None:
            # Each region's breaker: one region's outage is visible, and pulls nothing.
            checks["pcsBreakers"] = {
                r.name: r.client.breaker.state.value
                for r in state.regions
                if r.client.breaker is not None
            }
        serving = state.ready and not state.draining and state.service is not None
        status = "draining" if state.draining else "ready" if serving else "starting"
        body = {"status": status, "checks": checks}
        return JSONResponse(body, status_code=200 if serving else 503)

    async def metrics(request: Request) -> Response:
        return Response(state.observe.metrics.render(), media_type=CONTENT_TYPE)

    async def graphiql_asset(request: Request) -> Response:
        graphiql = state.graphql.graphiql
        if graphiql is None:
            return PlainTextResponse("Not Found", status_code=404)
        return graphiql.asset(request)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/graphql/assets/{path:path}", graphiql_asset, methods=["GET"]),
    ]

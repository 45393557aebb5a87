"""The emulator as an ASGI app: PCS's AWS JSON 1.0 protocol, plus a small control API.

POST /                         the PCS operations in `operations.py`, as PCS answers them;
                               the region is the one of the request's SigV4 credential scope
GET  /_emulator/calls          calls received: counts by operation, by region and operation
                               (`byRegion`), identifiers, and a log
POST /_emulator/reset          forget calls and faults, restore the seeded regions
PUT|DELETE /_emulator/faults   set (JSON fault plan, see faults.py) or clear faults
PUT|DELETE /_emulator/clusters/{name}?region=R   add, replace or remove a cluster (wire
                               JSON, optionally with its `queues`, `computeNodeGroups`, `tags`)
POST /_emulator/clusters/{identifier}/status     {"status": S, "region": R, "queue": Q or
                               "computeNodeGroup": G}: change a status now (modifiedAt moves);
                               a status in transition settles after the settle time

Settings from the environment: PCS_EMULATOR_FAULTS (a fault plan),
PCS_EMULATOR_SETTLE_SECONDS (default 30), PCS_EMULATOR_TOKEN_LIFETIME_SECONDS (default
86400). Seeded statuses stay as seeded, so that every status is always on show.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.emulator.faults import FaultPlan, FaultPlanError
from gateway.emulator.operations import OPERATIONS
from gateway.emulator.paging import DEFAULT_TOKEN_LIFETIME_SECONDS
from gateway.emulator.population import find
from gateway.emulator.seed import demo_regions
from gateway.emulator.state import DEFAULT_REGION, DEFAULT_SETTLE_SECONDS, EmulatorState
from gateway.emulator.wire import CONTENT_TYPE, Reset, answer, error_status
from gateway.pcs.model import load_model

__all__ = ["CONTENT_TYPE", "FAULTS_VARIABLE", "create_emulator", "error_status"]

log = logging.getLogger(__name__)

FAULTS_VARIABLE = "PCS_EMULATOR_FAULTS"
SETTLE_VARIABLE = "PCS_EMULATOR_SETTLE_SECONDS"
TOKEN_LIFETIME_VARIABLE = "PCS_EMULATOR_TOKEN_LIFETIME_SECONDS"  # noqa: S105 (a name)
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/,\s]+)/\d{8}/(?P<region>[a-z0-9-]+)/pcs/"
    r"aws4_request,\s*SignedHeaders=[a-z0-9;-]+,\s*Signature=[0-9a-f]{64}"
)
_STATUS = re.compile(r"[A-Z][A-Z_]{0,39}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")
# Access key ids that PCS refuses, for tests of the gateway's own credentials.
REFUSED_ACCESS_KEYS = {
    "expired": ("ExpiredTokenException", "The security token included in the request is expired"),
    "invalid": (
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    ),
}


def create_emulator(
    clusters: Iterable[dict[str, Any]] | Mapping[str, Iterable[dict[str, Any]]] | None = None,
    *,
    faults: dict[str, Any] | None = None,
    clock: Callable[[], float] = time.time,
    settle_seconds: float | None = None,
    token_lifetime_seconds: float | None = None,
) -> Starlette:
    """The emulator, seeded with `clusters`: a list (for us-east-1) or `{region: [...]}`.

    The demo regions by default. `clock` gives Unix time, for statuses and page tokens.
    """
    state = EmulatorState(
        clock=clock,
        settle_seconds=_seconds(SETTLE_VARIABLE, settle_seconds, DEFAULT_SETTLE_SECONDS),
        token_lifetime_seconds=_seconds(
            TOKEN_LIFETIME_VARIABLE, token_lifetime_seconds, DEFAULT_TOKEN_LIFETIME_SECONDS
        ),
    )
    if clusters is None:
        state.seed(demo_regions())
    elif isinstance(clusters, Mapping):
        state.seed(clusters)
    else:
        state.seed({DEFAULT_REGION: clusters})
    state.plan = FaultPlan.parse(faults) if faults is not None else _plan_from_environment()
    target_prefix = load_model()["metadata"]["targetPrefix"] + "."

    async def protocol(request: Request) -> Response:
        # Every request is logged, refused ones included; the counts are of accepted calls.
        target = request.headers.get("x-amz-target", "")
        name = target.removeprefix(target_prefix)
        entry: dict[str, Any] = {"operation": name, "at": time.time()}
        state.log.append(entry)
        reply = await _serve(request, target, name, entry)
        entry["status"] = "reset" if isinstance(reply, Reset) else reply.status_code
        entry["requestId"] = reply.headers.get("x-amzn-requestid")
        return reply

    async def _serve(request: Request, target: str, name: str, entry: dict[str, Any]) -> Response:
        refused, region = _check_signature(request)
        if refused is not None:
            return refused
        entry["region"] = region
        operation = OPERATIONS.get(name)
        if not target.startswith(target_prefix) or operation is None:
            return answer(
                400, {"__type": "UnknownOperationException", "message": "Unknown operation"}
            )
        state.count(region, name)
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return answer(400, {"__type": "SerializationException", "message": "Invalid JSON"})
        entry["identifier"] = body.get("clusterIdentifier")
        return await operation(state, body, region)

    async def calls(request: Request) -> Response:
        return JSONResponse(
            {
                **state.calls,
                "byRegion": state.counts(),
                "identifiers": state.identifiers,
                "log": list(state.log),
            }
        )

    async def reset(request: Request) -> Response:
        state.forget_calls()
        state.plan = FaultPlan()
        state.restore()
        return JSONResponse({"reset": True})

    async def faults_route(request: Request) -> Response:
        if request.method == "DELETE":
            state.plan = FaultPlan()
            return JSONResponse({"faults": None})
        try:
            state.plan = FaultPlan.parse(await request.json())
        except (FaultPlanError, ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"faults": "set"})

    async def cluster_route(request: Request) -> Response:
        name = request.path_params["name"]
        region = request.query_params.get("region", DEFAULT_REGION)
        if not _REGION.fullmatch(region):
            return JSONResponse({"error": "region must be a region name such as eu-west-1"}, 400)
        if request.method == "DELETE":
            state.region(region).remove(name)
            return JSONResponse({"deleted": name})
        try:
            cluster = await request.json()
        except ValueError:
            cluster = None
        if not isinstance(cluster, dict) or cluster.get("name") != name:
            return JSONResponse({"error": "body must be a cluster named as the path"}, 400)
        try:
            state.region(region).store(cluster)
        except (KeyError, TypeError, AttributeError):
            return JSONResponse({"error": "every resource needs a name, an id and an arn"}, 400)
        return JSONResponse({"stored": name})

    async def status_route(request: Request) -> Response:
        try:
            change = await request.json()
        except ValueError:
            change = None
        if not isinstance(change, dict):
            return JSONResponse({"error": "body must be a JSON object"}, 400)
        status, region = change.get("status"), change.get("region", DEFAULT_REGION)
        if not isinstance(status, str) or not _STATUS.fullmatch(status):
            return JSONResponse({"error": "status must be a status such as UPDATING"}, 400)
        if not isinstance(region, str) or not _REGION.fullmatch(region):
            return JSONResponse({"error": "region must be a region name such as eu-west-1"}, 400)
        population = state.region(region)
        cluster = population.cluster(request.path_params["identifier"])
        if cluster is None:
            return JSONResponse({"error": "no such cluster in that region"}, 404)
        target: dict[str, Any] | None = cluster
        members = {"queue": population.queues, "computeNodeGroup": population.node_groups}
        for key, store in members.items():
            named = change.get(key)
            if key in change:
                found = store.get(cluster["id"], {})
                target = find(found, named) if isinstance(named, str) else None
        if target is None:
            return JSONResponse({"error": "no such queue or compute node group"}, 404)
        population.set_status(target, status, state.clock(), state.settle_seconds)
        return JSONResponse({"name": target["name"], "status": status})

    app = Starlette(
        routes=[
            Route("/", protocol, methods=["POST"]),
            Route("/_emulator/calls", calls, methods=["GET"]),
            Route("/_emulator/reset", reset, methods=["POST"]),
            Route("/_emulator/faults", faults_route, methods=["PUT", "POST", "DELETE"]),
            Route("/_emulator/clusters/{name}", cluster_route, methods=["PUT", "DELETE"]),
            Route("/_emulator/clusters/{identifier}/status", status_route, methods=["POST"]),
        ]
    )
    app.state.emulator = state
    return app


def _check_signature(request: Request) -> tuple[Response | None, str]:
    """A refusal for a request PCS would not accept, else None and the request's region."""
    authorization = request.headers.get("authorization")
    if not authorization or "x-amz-date" not in request.headers:
        return answer(
            403,
            {
                "__type": "MissingAuthenticationTokenException",
                "message": "Missing Authentication Token",
            },
        ), ""
    match = _AUTHORIZATION.match(authorization)
    if match is None:
        return answer(
            403,
            {
                "__type": "IncompleteSignatureException",
                "message": "The request signature is malformed.",
            },
        ), ""
    refused = REFUSED_ACCESS_KEYS.get(match["key"])
    if refused is not None:
        return answer(
            400 if refused[0] != "ExpiredTokenException" else 403,
            {"__type": refused[0], "message": refused[1]},
        ), match["region"]
    return None, match["region"]


def _seconds(variable: str, given: float | None, default: float) -> float:
    """A duration given, else from the environment, else the default; a bad one raises."""
    if given is not None:
        return given
    raw = os.environ.get(variable)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 31_536_000:
        raise FaultPlanError(f"{variable}: must be a number of seconds from 0 to 31536000")
    return value


def _plan_from_environment() -> FaultPlan:
    """The plan in PCS_EMULATOR_FAULTS; a bad one raises FaultPlanError naming the variable."""
    raw = os.environ.get(FAULTS_VARIABLE)
    if not raw:
        return FaultPlan()
    try:
        return FaultPlan.parse(json.loads(raw))
    except ValueError as exc:
        # FaultPlanError is a ValueError, and so is json's JSONDecodeError.
        reason = str(exc) if isinstance(exc, FaultPlanError) else "not JSON"
        raise FaultPlanError(f"{FAULTS_VARIABLE}: {reason}") from None

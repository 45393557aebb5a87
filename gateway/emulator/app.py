"""The emulator as an ASGI app: PCS's AWS JSON 1.0 protocol, plus a small control API.

POST /                         GetCluster and ListClusters, as PCS answers them
GET  /_emulator/calls          calls received: counts by operation, identifiers, and a log
POST /_emulator/reset          forget calls and faults, restore the seeded clusters
PUT|DELETE /_emulator/faults   set (JSON fault plan, see faults.py) or clear faults
PUT|DELETE /_emulator/clusters/{name}   add, replace or remove a cluster (wire JSON)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway.emulator.faults import DEFAULT_RETRY_AFTER_SECONDS, Fault, FaultPlan, FaultPlanError
from gateway.emulator.seed import demo_clusters
from gateway.pcs.model import identifier_pattern, load_model

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/x-amz-json-1.0"
FAULTS_VARIABLE = "PCS_EMULATOR_FAULTS"
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/,\s]+)/\d{8}/[a-z0-9-]+/pcs/aws4_request,\s*"
    r"SignedHeaders=[a-z0-9;-]+,\s*Signature=[0-9a-f]{64}"
)
# Access key ids that PCS refuses, for tests of the gateway's own credentials.
REFUSED_ACCESS_KEYS = {
    "expired": ("ExpiredTokenException", "The security token included in the request is expired"),
    "invalid": (
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    ),
}
#: Calls remembered in the log of /_emulator/calls; older ones are dropped.
CALL_LOG_LIMIT = 10_000


@cache
def error_status(code: str) -> int:
    """The HTTP status PCS answers an error with, as the service model defines it.

    AWS JSON 1.0 sends the shape's `error.httpStatusCode` when the model has one, else 500
    for faults (server errors) and 400 for everything else; PCS's model sets none.
    """
    shape = load_model()["shapes"].get(code, {})
    status = shape.get("error", {}).get("httpStatusCode")
    if isinstance(status, int):
        return status
    return 500 if shape.get("fault") else 400


@dataclass
class EmulatorState:
    """Clusters, faults and the record of calls."""

    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)
    plan: FaultPlan = field(default_factory=FaultPlan)
    calls: Counter[str] = field(default_factory=Counter)
    identifiers: list[str] = field(default_factory=list)
    #: One entry a call: operation, identifier, arrival (Unix time), status, request id.
    log: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=CALL_LOG_LIMIT))

    def seed(self, clusters: Iterable[dict[str, Any]]) -> None:
        self.clusters = {cluster["name"]: cluster for cluster in clusters}

    def find(self, identifier: str) -> dict[str, Any] | None:
        found = self.clusters.get(identifier)
        if found is not None:
            return found
        return next((c for c in self.clusters.values() if c["id"] == identifier), None)


def _error_body(
    code: str, identifier: str | None, retry_after: int = DEFAULT_RETRY_AFTER_SECONDS
) -> dict[str, Any]:
    body: dict[str, Any] = {"__type": f"com.amazonaws.pcs#{code}"}
    if code == "ValidationException":
        body |= {
            "message": "1 validation error detected: clusterIdentifier failed the pattern",
            "reason": "fieldValidationFailed",
            "fieldList": [{"name": "clusterIdentifier", "message": "does not match the pattern"}],
        }
    elif code in ("ResourceNotFoundException", "ConflictException"):
        body |= {
            "message": f"Cluster {identifier} "
            + ("not found" if code == "ResourceNotFoundException" else "is being modified"),
            "resourceId": identifier or "",
            "resourceType": "cluster",
        }
    elif code == "ThrottlingException":
        body |= {"message": "Rate exceeded", "retryAfterSeconds": retry_after}
    elif code == "AccessDeniedException":
        body["message"] = "User is not authorized to perform: pcs:GetCluster"
    else:
        body["message"] = "An internal error occurred."
    return body


def _answer(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    content = json.dumps(body, separators=(",", ":")).encode()
    all_headers = {"x-amzn-RequestId": str(uuid.uuid4())} | (headers or {})
    return Response(content, status_code=status, media_type=CONTENT_TYPE, headers=all_headers)


def _error(
    code: str,
    identifier: str | None = None,
    retry_after: int = DEFAULT_RETRY_AFTER_SECONDS,
    status: int | None = None,
) -> Response:
    body = _error_body(code, identifier, retry_after)
    return _answer(status or error_status(code), body)


class _Reset(Response):
    """An answer cut off mid-body: the client sees the connection drop."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", CONTENT_TYPE.encode()), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"cluster":', "more_body": True})
        # Returning with the body unfinished makes the server drop the connection.


def _malformed(kind: str) -> Response:
    body = {
        "garbage": b"<html><body>502 Bad Gateway</body></html>",
        "truncated": b'{"cluster":{"name":"dem',
        "empty": b"",
    }[kind]
    return Response(
        body,
        status_code=200,
        media_type=CONTENT_TYPE,
        headers={"x-amzn-RequestId": str(uuid.uuid4())},
    )


def create_emulator(
    clusters: Iterable[dict[str, Any]] | None = None, *, faults: dict[str, Any] | None = None
) -> Starlette:
    """The emulator, seeded with `clusters` (the demo set by default)."""
    state = EmulatorState()
    seeded = list(demo_clusters() if clusters is None else clusters)
    state.seed(json.loads(json.dumps(seeded)))
    if faults is not None:
        state.plan = FaultPlan.parse(faults)
    else:
        state.plan = _plan_from_environment()
    pattern = re.compile(identifier_pattern())
    target_prefix = load_model()["metadata"]["targetPrefix"] + "."

    async def get_cluster(body: dict[str, Any]) -> Response:
        identifier = body.get("clusterIdentifier")
        if not isinstance(identifier, str) or not pattern.fullmatch(identifier):
            return _error("ValidationException")
        state.identifiers.append(identifier)
        # PCS throttles before it looks at the request: a throttled call uses up no fault.
        fault = state.plan.throttles(identifier) or state.plan.fault_for(identifier)
        if fault is not None:
            outcome = await _apply(fault, identifier)
            if outcome is not None:
                return outcome
        cluster = state.find(identifier)
        if cluster is None:
            return _error("ResourceNotFoundException", identifier)
        return _answer(200, {"cluster": cluster})

    async def list_clusters(body: dict[str, Any]) -> Response:
        fault = state.plan.fault_for(None)
        if fault is not None:
            outcome = await _apply(fault, None)
            if outcome is not None:
                return outcome
        limit = int(body.get("maxResults") or 10)
        start = int(body.get("nextToken") or 0)
        names = sorted(state.clusters)
        page = names[start : start + limit]
        summary_members = load_model()["shapes"]["ClusterSummary"]["members"]
        answer: dict[str, Any] = {
            "clusters": [
                {k: v for k, v in state.clusters[n].items() if k in summary_members} for n in page
            ]
        }
        if start + limit < len(names):
            answer["nextToken"] = str(start + limit)
        return _answer(200, answer)

    operations = {"GetCluster": get_cluster, "ListClusters": list_clusters}

    async def protocol(request: Request) -> Response:
        # Every request is logged, refused ones included; the counts are of accepted calls.
        target = request.headers.get("x-amz-target", "")
        name = target.removeprefix(target_prefix)
        entry: dict[str, Any] = {"operation": name, "at": time.time()}
        state.log.append(entry)
        answer = await _serve(request, target, name, entry)
        entry["status"] = "reset" if isinstance(answer, _Reset) else answer.status_code
        entry["requestId"] = answer.headers.get("x-amzn-requestid")
        return answer

    async def _serve(request: Request, target: str, name: str, entry: dict[str, Any]) -> Response:
        refused = _check_signature(request)
        if refused is not None:
            return refused
        operation = operations.get(name)
        if not target.startswith(target_prefix) or operation is None:
            return _answer(
                400, {"__type": "UnknownOperationException", "message": "Unknown operation"}
            )
        state.calls[name] += 1
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _answer(400, {"__type": "SerializationException", "message": "Invalid JSON"})
        entry["identifier"] = body.get("clusterIdentifier")
        return await operation(body)

    async def calls(request: Request) -> Response:
        return JSONResponse(
            {**state.calls, "identifiers": state.identifiers, "log": list(state.log)}
        )

    async def reset(request: Request) -> Response:
        state.calls.clear()
        state.identifiers.clear()
        state.log.clear()
        state.plan = FaultPlan()
        state.seed(json.loads(json.dumps(seeded)))
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
        if request.method == "DELETE":
            state.clusters.pop(name, None)
            return JSONResponse({"deleted": name})
        cluster = await request.json()
        if not isinstance(cluster, dict) or cluster.get("name") != name:
            return JSONResponse({"error": "body must be a cluster named as the path"}, 400)
        state.clusters[name] = cluster
        return JSONResponse({"stored": name})

    app = Starlette(
        routes=[
            Route("/", protocol, methods=["POST"]),
            Route("/_emulator/calls", calls, methods=["GET"]),
            Route("/_emulator/reset", reset, methods=["POST"]),
            Route("/_emulator/faults", faults_route, methods=["PUT", "POST", "DELETE"]),
            Route("/_emulator/clusters/{name}", cluster_route, methods=["PUT", "DELETE"]),
        ]
    )
    app.state.emulator = state
    return app


async def _apply(fault: Fault, identifier: str | None) -> Response | None:
    if fault.latency_seconds:
        await asyncio.sleep(fault.latency_seconds)
    if fault.reset:
        return _Reset()
    if fault.malformed:
        return _malformed(fault.malformed)
    if fault.error:
        return _error(fault.error, identifier, fault.retry_after_seconds, fault.http_status)
    return None


def _check_signature(request: Request) -> Response | None:
    authorization = request.headers.get("authorization")
    if not authorization or "x-amz-date" not in request.headers:
        return _answer(
            403,
            {
                "__type": "MissingAuthenticationTokenException",
                "message": "Missing Authentication Token",
            },
        )
    match = _AUTHORIZATION.match(authorization)
    if match is None:
        return _answer(
            403,
            {
                "__type": "IncompleteSignatureException",
                "message": "The request signature is malformed.",
            },
        )
    refused = REFUSED_ACCESS_KEYS.get(match["key"])
    if refused is not None:
        return _answer(
            400 if refused[0] != "ExpiredTokenException" else 403,
            {"__type": refused[0], "message": refused[1]},
        )
    return None


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

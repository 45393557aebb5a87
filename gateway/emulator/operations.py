"""The PCS operations the emulator answers, each as PCS does: validation, faults, lookup."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from functools import cache
from typing import Any

from starlette.responses import Response

from gateway.emulator.faults import Fault
from gateway.emulator.paging import PageTokenError
from gateway.emulator.population import Wire, find
from gateway.emulator.state import EmulatorState
from gateway.emulator.wire import Reset, Subject, answer, error, malformed
from gateway.pcs.model import shapes

#: The page size PCS uses when a call names none.
DEFAULT_PAGE_SIZE = 10

Operation = Callable[[EmulatorState, dict[str, Any], str], Awaitable[Response]]


@cache
def _pattern(shape: str) -> re.Pattern[str]:
    return re.compile(shapes()[shape]["pattern"])


@cache
def _summary_members(shape: str) -> frozenset[str]:
    return frozenset(shapes()[shape]["members"])


def _valid(value: Any, shape: str) -> bool:
    return isinstance(value, str) and _pattern(shape).fullmatch(value) is not None


async def _faulted(
    state: EmulatorState,
    region: str,
    subject: Subject,
    cluster: str | None,
    resource: str | None = None,
) -> Response | None:
    # PCS throttles before it looks at the request: a throttled call uses up no fault.
    operation = subject.operation
    plans = state.plan.for_call(region)
    fault = next(
        (f for p in plans if (f := p.throttles(cluster, operation=operation, resource=resource))),
        None,
    ) or next(
        (f for p in plans if (f := p.fault_for(cluster, operation=operation, resource=resource))),
        None,
    )
    return None if fault is None else await apply(fault, subject)


async def apply(fault: Fault, subject: Subject) -> Response | None:
    """The answer a fault makes of a call; None when it only delays it."""
    if fault.latency_seconds:
        await asyncio.sleep(fault.latency_seconds)
    if fault.reset:
        return Reset()
    if fault.malformed:
        return malformed(fault.malformed)
    if fault.error:
        return error(fault.error, subject, fault.retry_after_seconds, fault.http_status)
    return None


def _page(
    state: EmulatorState,
    body: Mapping[str, Any],
    listing: str,
    items: list[Wire],
    summary: str,
    subject: Subject,
) -> tuple[list[Wire], str | None] | Response:
    """One page of `items` (sorted by name) as summaries, and the token of the next one."""
    size = body.get("maxResults", DEFAULT_PAGE_SIZE)
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 100:
        invalid = Subject(subject.operation, field="maxResults")
        return error("ValidationException", invalid, message="maxResults must be from 1 to 100")
    token = body.get("nextToken")
    start = 0
    if token is not None:
        try:
            start = state.tokens.read(listing, token) if isinstance(token, str) else -1
        except (PageTokenError, ValueError, KeyError, TypeError) as exc:
            reason = str(exc) if isinstance(exc, PageTokenError) else "The nextToken is not valid."
            invalid = Subject(subject.operation, field="nextToken")
            return error("ValidationException", invalid, message=reason)
        if start < 0:
            invalid = Subject(subject.operation, field="nextToken")
            return error("ValidationException", invalid, message="The nextToken is not valid.")
    ordered = sorted(items, key=lambda item: item["name"])
    members = _summary_members(summary)
    page = [{k: v for k, v in item.items() if k in members} for item in ordered[start:][:size]]
    after = start + size
    return page, state.tokens.issue(listing, after) if after < len(ordered) else None


async def get_cluster(state: EmulatorState, body: dict[str, Any], region: str) -> Response:
    """GetCluster: a cluster by name or id."""
    identifier = body.get("clusterIdentifier")
    if not _valid(identifier, "ClusterIdentifier"):
        return error("ValidationException")
    assert isinstance(identifier, str)
    state.identifiers.append(identifier)
    subject = Subject("GetCluster", identifier)
    refused = await _faulted(state, region, subject, identifier)
    if refused is not None:
        return refused
    cluster = state.find(identifier, region)
    if cluster is None:
        return error("ResourceNotFoundException", subject)
    return answer(200, {"cluster": cluster})


async def list_clusters(state: EmulatorState, body: dict[str, Any], region: str) -> Response:
    """ListClusters: one page of the region's clusters."""
    subject = Subject("ListClusters")
    refused = await _faulted(state, region, subject, None)
    if refused is not None:
        return refused
    clusters = list(state.region(region).clusters.values())
    paged = _page(state, body, f"clusters:{region}", clusters, "ClusterSummary", subject)
    if isinstance(paged, Response):
        return paged
    page, token = paged
    return answer(200, {"clusters": page} | ({"nextToken": token} if token else {}))


def _list_of(kind: str, member: str, summary: str, operation: str) -> Operation:
    async def list_members(state: EmulatorState, body: dict[str, Any], region: str) -> Response:
        identifier = body.get("clusterIdentifier")
        if not _valid(identifier, "ClusterIdentifier"):
            return error("ValidationException", Subject(operation))
        assert isinstance(identifier, str)
        subject = Subject(operation, identifier)
        refused = await _faulted(state, region, subject, identifier)
        if refused is not None:
            return refused
        population = state.region(region)
        cluster = population.cluster(identifier)
        if cluster is None:
            return error("ResourceNotFoundException", subject)
        store = population.queues if kind == "queues" else population.node_groups
        items = list(store.get(cluster["id"], {}).values())
        listing = f"{kind}:{region}:{cluster['id']}"
        paged = _page(state, body, listing, items, summary, subject)
        if isinstance(paged, Response):
            return paged
        page, token = paged
        return answer(200, {member: page} | ({"nextToken": token} if token else {}))

    return list_members


def _get_of(kind: str, field: str, shape: str, member: str, operation: str) -> Operation:
    resource_type = "queue" if kind == "queues" else "computeNodeGroup"

    async def get_member(state: EmulatorState, body: dict[str, Any], region: str) -> Response:
        identifier = body.get("clusterIdentifier")
        if not _valid(identifier, "ClusterIdentifier"):
            return error("ValidationException", Subject(operation))
        named = body.get(field)
        if not _valid(named, shape):
            return error("ValidationException", Subject(operation, field=field))
        assert isinstance(identifier, str) and isinstance(named, str)
        subject = Subject(operation, named, resource_type, field)
        refused = await _faulted(state, region, subject, identifier, named)
        if refused is not None:
            return refused
        population = state.region(region)
        cluster = population.cluster(identifier)
        if cluster is None:
            return error("ResourceNotFoundException", Subject(operation, identifier))
        store = population.queues if kind == "queues" else population.node_groups
        found = find(store.get(cluster["id"], {}), named)
        if found is None:
            return error("ResourceNotFoundException", subject)
        return answer(200, {member: found})

    return get_member


async def list_tags_for_resource(
    state: EmulatorState, body: dict[str, Any], region: str
) -> Response:
    """ListTagsForResource: the tags of a cluster, queue or node group, by ARN."""
    arn = body.get("resourceArn")
    subject = Subject("ListTagsForResource", arn if isinstance(arn, str) else None, "resource")
    if not _valid(arn, "Arn"):
        return error("ValidationException", Subject("ListTagsForResource", field="resourceArn"))
    refused = await _faulted(state, region, subject, None, arn)
    if refused is not None:
        return refused
    population = state.region(region)
    if population.resource(str(arn)) is None:
        return error("ResourceNotFoundException", subject)
    return answer(200, {"tags": population.tags.get(str(arn), {})})


OPERATIONS: dict[str, Operation] = {
    "GetCluster": get_cluster,
    "ListClusters": list_clusters,
    "ListQueues": _list_of("queues", "queues", "QueueSummary", "ListQueues"),
    "GetQueue": _get_of("queues", "queueIdentifier", "QueueIdentifier", "queue", "GetQueue"),
    "ListComputeNodeGroups": _list_of(
        "node_groups", "computeNodeGroups", "ComputeNodeGroupSummary", "ListComputeNodeGroups"
    ),
    "GetComputeNodeGroup": _get_of(
        "node_groups",
        "computeNodeGroupIdentifier",
        "ComputeNodeGroupIdentifier",
        "computeNodeGroup",
        "GetComputeNodeGroup",
    ),
    "ListTagsForResource": list_tags_for_resource,
}

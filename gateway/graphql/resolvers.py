"""Resolvers: arguments in, cluster answers out, through the cluster service only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from contextlib import AbstractContextManager
from typing import Any

from graphql import OperationType
from strawberry.dataloader import DataLoader
from strawberry.types import Info

from gateway.graphql.context import GatewayContext
from gateway.graphql.errors import GatewayError
from gateway.observe.tracing import span
from gateway.pcs.compute_node_group import ComputeNodeGroup
from gateway.pcs.errors import DeadlineExceeded
from gateway.pcs.queue import Queue
from gateway.service.clusters import ClusterAnswer, check_identifier
from gateway.service.regions import RegionServices


async def cluster(
    info: Info[GatewayContext, None], identifier: str, refresh: bool, region: str | None = None
) -> ClusterAnswer:
    """One cluster by name or id, in `region` (the default region when None)."""
    context = info.context
    services = context.regions.get(region)  # an unserved region fails before any call
    with _resolver_span(info, identifier):
        answer = await look_up(context, services, identifier, refresh=refresh)
    _note(info, answer)
    return answer


async def look_up(
    context: GatewayContext, services: RegionServices, identifier: str, *, refresh: bool = False
) -> ClusterAnswer:
    """A cluster's answer as a field asks for it: fetched again when `refresh` (the answer
    then depends on the moment), else through the request's loader; within the deadline."""
    lookup: Awaitable[ClusterAnswer]
    if refresh:
        context.volatile = True
        lookup = services.clusters.get(identifier, refresh=True)
    else:
        lookup = _loader(context, services).load(identifier)
    return await _within_deadline(context, services, lookup, identifier)


def clusters(
    info: Info[GatewayContext, None], identifiers: list[str], region: str | None = None
) -> list[Awaitable[ClusterAnswer | None]]:
    """Clusters in the order asked; a failing identifier gives null with its own error."""
    context = info.context
    limit = context.settings.max_batch_size
    if len(identifiers) > limit:
        raise GatewayError(
            f"A batch may ask for at most {limit} clusters.", "BAD_USER_INPUT", limit=limit
        )
    services = context.regions.get(region)
    loader = _loader(context, services)
    return [
        _one(info, services, loader, identifier, index)
        for index, identifier in enumerate(identifiers)
    ]


async def _one(
    info: Info[GatewayContext, None],
    services: RegionServices,
    loader: DataLoader[str, ClusterAnswer],
    identifier: str,
    index: int,
) -> ClusterAnswer | None:
    with _resolver_span(info, identifier, index):
        answer = await _within_deadline(info.context, services, loader.load(identifier), identifier)
    _note(info, answer, index)
    return answer


def _resolver_span(
    info: Info[GatewayContext, None],
    identifier: str,
    index: int | None = None,
    *,
    resource: str | None = None,
) -> AbstractContextManager[Any]:
    """The field's span: the cluster it names, and the queue or node group below it."""
    tracer = info.context.tracer
    if tracer is None:
        return span(None, "")
    path = [*info.path.as_list(), *(() if index is None else (index,))]
    attributes = {
        "graphql.field.name": info.field_name,
        "graphql.field.path": ".".join(str(part) for part in path),
        "aws.pcs.cluster_identifier": identifier,
    }
    if resource is not None:
        attributes["aws.pcs.resource_identifier"] = resource
    return span(tracer, f"Query.{info.field_name}", attributes=attributes)


async def _within_deadline(
    context: GatewayContext,
    services: RegionServices,
    lookup: Awaitable[ClusterAnswer],
    identifier: str,
) -> ClusterAnswer:
    """The lookup's answer; at the request's deadline, the stale copy when there is one,
    else DeadlineExceeded.

    Only this request stops waiting: the shared PCS call goes on and fills the cache.
    """
    try:
        async with asyncio.timeout(max(0.0, context.deadline - time.monotonic())):
            return await lookup
    except TimeoutError:
        stale = await services.clusters.stale_copy(identifier)
        if stale is not None:
            return stale
        raise DeadlineExceeded(
            "PCS did not answer within the request's deadline; retry later.",
            detail=f"request deadline of {context.settings.request_deadline_seconds:g} s passed",
        ) from None


def _loader(context: GatewayContext, services: RegionServices) -> DataLoader[str, ClusterAnswer]:
    """The request's loader of one region: a name is a different cluster in another region."""
    loader = context.loaders.get(services.name)
    if loader is None:
        service = services.clusters

        async def load(identifiers: list[str]) -> list[ClusterAnswer | BaseException]:
            return await asyncio.gather(
                *(service.get(identifier) for identifier in identifiers), return_exceptions=True
            )

        # Batches of one: each field resolves as soon as its own answer is in, so one slow
        # cluster never holds back the others; the loader's cache still looks duplicates up once.
        loader = context.loaders[services.name] = DataLoader(load_fn=load, max_batch_size=1)
    return loader


def _note(
    info: Info[GatewayContext, None], answer: ClusterAnswer, index: int | None = None
) -> None:
    # Only a query's answer may be reused; a mutation's never is.
    if info.operation.operation is OperationType.QUERY:
        info.context.note_answer(answer)
    if not answer.stale:
        return
    path: list[Any] = list(info.path.as_list())
    if index is not None:
        path.append(index)
    info.context.volatile = True
    info.context.stale.append({"path": path, "ageSeconds": round(answer.age_seconds(), 3)})


async def queue(
    info: Info[GatewayContext, None], cluster: str, identifier: str, region: str | None
) -> Queue:
    """One queue of a cluster by name or id."""
    check_identifier(cluster)
    graph = info.context.resources
    services = graph.region(region)
    with _resolver_span(info, cluster, resource=identifier):
        return await graph.queue_details(
            services.name, cluster, identifier, None, list(info.path.as_list())
        )


async def compute_node_group(
    info: Info[GatewayContext, None], cluster: str, identifier: str, region: str | None
) -> ComputeNodeGroup:
    """One compute node group of a cluster by name or id."""
    check_identifier(cluster)
    graph = info.context.resources
    services = graph.region(region)
    with _resolver_span(info, cluster, resource=identifier):
        return await graph.compute_node_group_details(
            services.name, cluster, identifier, None, list(info.path.as_list())
        )

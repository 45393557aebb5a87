"""The schema: the Query type, and the extensions every operation passes through."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Annotated, Any

import strawberry
from graphql.error import GraphQLError
from strawberry.extensions import ParserCache, SchemaExtension, ValidationCache
from strawberry.schema.schema import StreamResult
from strawberry.types import ExecutionContext, ExecutionResult, Info
from strawberry.types.graphql import OperationType

from gateway.config import Settings
from gateway.graphql import graph, resolvers
from gateway.graphql.context import GatewayContext
from gateway.graphql.errors import ErrorContract, log_errors, to_contract
from gateway.graphql.limits import limit_extensions, validation_extension
from gateway.graphql.node_group_types import ComputeNodeGroup
from gateway.graphql.queue_types import Queue
from gateway.graphql.resource_types import ClusterConnection
from gateway.graphql.subscriptions import Subscription
from gateway.graphql.types import Cluster, DateTime

#: The `region` argument of every root field: one of `regions`, the default when absent.
Region = Annotated[
    str | None,
    strawberry.argument(
        description=(
            "The AWS region to ask, one of `regions` (e.g. eu-west-1); absent or null: the "
            "gateway's default region, the first of `regions`. A region the gateway does not "
            "serve is BAD_USER_INPUT, and PCS is not called."
        )
    ),
]
_CLUSTER = strawberry.argument(description="The cluster's name or its id (pcs_...).")


@strawberry.type(description="Read AWS PCS clusters.")
class Query:
    @strawberry.field(
        description=(
            "One cluster by name or id. Null, with an error on this path, when the cluster "
            "does not exist or PCS fails."
        )
    )
    async def cluster(
        self,
        info: Info[GatewayContext, None],
        identifier: Annotated[
            str, strawberry.argument(description="The cluster's name or its id (pcs_...).")
        ],
        refresh: Annotated[
            bool,
            strawberry.argument(
                description=(
                    "Ask PCS again instead of answering from the cache. Concurrent refreshes "
                    "of one cluster still make one PCS call."
                )
            ),
        ] = False,
        region: Region = None,
    ) -> Cluster | None:
        answer = await resolvers.cluster(info, identifier, refresh, region)
        return answer  # type: ignore[return-value]

    @strawberry.field(
        description=(
            "Several clusters by name or id, in the order asked; duplicates are looked up once. "
            "A failing identifier gives null at its index and an error with that index in its path."
        )
    )
    def clusters(
        self,
        info: Info[GatewayContext, None],
        identifiers: Annotated[
            list[str],
            strawberry.argument(description="Names or ids; at most the gateway's batch limit."),
        ],
        region: Region = None,
    ) -> list[Cluster | None]:
        return resolvers.clusters(info, identifiers, region)  # type: ignore[return-value]

    @strawberry.field(
        description=(
            "The AWS regions this gateway serves, the default first: the values the `region` "
            "argument takes."
        )
    )
    def regions(self, info: Info[GatewayContext, None]) -> list[str]:
        return list(info.context.regions.names)

    @strawberry.field(
        description=(
            "A page of the region's clusters (ListClusters), in PCS's order. Fields beyond the "
            "summary (name, id, arn, status, times, tags, queues, compute node groups) cost "
            "one GetCluster per cluster, cached."
        )
    )
    async def cluster_list(
        self,
        info: Info[GatewayContext, None],
        first: Annotated[int, strawberry.argument(description="How many: 1 to 100.")] = 10,
        after: Annotated[
            str | None,
            strawberry.argument(
                description="The endCursor (or an edge's cursor) of the page before; "
                "omit for the first page."
            ),
        ] = None,
        region: Region = None,
    ) -> ClusterConnection:
        return await graph.cluster_page(info, region, first, after)  # type: ignore[return-value]

    @strawberry.field(
        description="One queue of a cluster (GetQueue). Null, with an error on this path, when "
        "it does not exist or PCS fails."
    )
    async def queue(
        self,
        info: Info[GatewayContext, None],
        cluster: Annotated[str, _CLUSTER],
        identifier: Annotated[
            str, strawberry.argument(description="The queue's name or its id (pcs_...).")
        ],
        region: Region = None,
    ) -> Queue | None:
        return await resolvers.queue(info, cluster, identifier, region)  # type: ignore[return-value]

    @strawberry.field(
        description="One compute node group of a cluster (GetComputeNodeGroup). Null, with an "
        "error on this path, when it does not exist or PCS fails."
    )
    async def compute_node_group(
        self,
        info: Info[GatewayContext, None],
        cluster: Annotated[str, _CLUSTER],
        identifier: Annotated[
            str, strawberry.argument(description="The group's name or its id (pcs_...).")
        ],
        region: Region = None,
    ) -> ComputeNodeGroup | None:
        found = await resolvers.compute_node_group(info, cluster, identifier, region)
        return found  # type: ignore[return-value]


class StaleReport(SchemaExtension):
    """Lists the clusters answered stale in the response's `extensions.stale`."""

    def get_results(self) -> dict[str, Any]:
        context = self.execution_context.context
        stale = getattr(context, "stale", None)
        return {"stale": stale} if stale else {}


class GatewaySchema(strawberry.Schema):
    """The schema, logging each error once on the server side."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_errors(errors)

    async def stream(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        operation_extensions: dict[str, Any] | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
    ) -> StreamResult:
        """Strawberry's stream, each result's errors in the contract (subscription events too)."""
        source = await super().stream(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            operation_extensions,
            allowed_operation_types,
        )
        return _in_contract(source)


async def _in_contract(source: StreamResult) -> StreamResult:
    async with contextlib.aclosing(source):
        async for result in source:
            if isinstance(result, ExecutionResult) and result.errors:
                result.errors = [to_contract(error) for error in result.errors]
            yield result


#: Parsed and validated documents kept per process.
DOCUMENT_CACHE_SIZE = 128


def build_schema(
    extensions: list[Callable[[], SchemaExtension]] | None = None,
    settings: Settings | None = None,
) -> GatewaySchema:
    """The schema with the gateway's extensions; `extensions` run before the error contract.

    With `settings`, the operation limits and the introspection switch they set apply.
    """
    # Factories, made per operation; the parse and validation caches are shared by maxsize.
    # Frontends send a few documents; a parsed one is a thousand objects or so, and a
    # larger cache mostly lengthens the garbage collector's full passes under load.
    chain: list[Callable[[], SchemaExtension]] = [
        *(limit_extensions(settings) if settings is not None else []),
        lambda: ParserCache(maxsize=DOCUMENT_CACHE_SIZE),
        (
            validation_extension(settings, maxsize=DOCUMENT_CACHE_SIZE)
            if settings is not None
            else lambda: ValidationCache(maxsize=DOCUMENT_CACHE_SIZE)
        ),
        *(extensions or []),
        StaleReport,
        ErrorContract,
    ]
    return GatewaySchema(
        query=Query,
        subscription=Subscription,
        extensions=chain,
        scalar_overrides={datetime: DateTime},
    )


def export_sdl() -> str:
    """The schema in SDL, as schema/schema.graphql holds it."""
    return build_schema().as_str() + "\n"

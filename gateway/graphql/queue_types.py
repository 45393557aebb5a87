"""The GraphQL types of a PCS queue, resolved from the domain objects of `gateway.pcs.queue`."""

from __future__ import annotations

import asyncio
from datetime import datetime
from enum import Enum

import strawberry
from strawberry import Parent

from gateway.graphql import graph
from gateway.graphql.graph import EdgeRoot, PageRoot, region_of
from gateway.graphql.node_group_types import ComputeNodeGroup
from gateway.graphql.resource_types import (
    NODE_DESCRIPTION,
    PageInfo,
    page_info,
    resources,
    tag_list,
)
from gateway.graphql.types import (
    UNKNOWN_DESCRIPTION,
    Cluster,
    ErrorInfo,
    SlurmCustomSetting,
    Tag,
    known,
)
from gateway.pcs import queue as pcs
from gateway.pcs.compute_node_group import ComputeNodeGroup as PcsComputeNodeGroup


@strawberry.enum(
    description="Lifecycle state of a queue as PCS reports it (provisioning, not job health)."
)
class QueueStatus(Enum):
    CREATING = strawberry.enum_value("CREATING", description="PCS is creating the queue.")
    ACTIVE = strawberry.enum_value("ACTIVE", description="The queue accepts jobs.")
    UPDATING = strawberry.enum_value("UPDATING", description="A change is being applied.")
    DELETING = strawberry.enum_value("DELETING", description="PCS is deleting the queue.")
    CREATE_FAILED = strawberry.enum_value(
        "CREATE_FAILED", description="Creation failed; see errorInfo."
    )
    DELETE_FAILED = strawberry.enum_value(
        "DELETE_FAILED", description="Deletion failed; see errorInfo."
    )
    UPDATE_FAILED = strawberry.enum_value(
        "UPDATE_FAILED", description="An update failed; see errorInfo."
    )
    SUSPENDING = strawberry.enum_value(
        "SUSPENDING", description="PCS is suspending the queue with its suspended cluster."
    )
    SUSPENDED = strawberry.enum_value(
        "SUSPENDED", description="The queue is suspended with its cluster: no jobs run."
    )
    RESUMING = strawberry.enum_value("RESUMING", description="PCS is resuming the queue.")
    UNKNOWN = strawberry.enum_value("UNKNOWN", description=UNKNOWN_DESCRIPTION)


@strawberry.type(description="A compute node group a queue sends jobs to.")
class ComputeNodeGroupConfiguration:
    compute_node_group_id: str | None = strawberry.field(
        description="Id of the compute node group; null when PCS does not report it."
    )


@strawberry.type(description="Slurm settings of a queue (its Slurm partition).")
class QueueSlurmConfiguration:
    slurm_custom_settings: list[SlurmCustomSetting] = strawberry.field(
        description="Partition parameters set by the owner; empty when none."
    )


@strawberry.type(description="A PCS queue: a Slurm partition that sends jobs to node groups.")
class Queue:
    """Resolved from a `gateway.pcs.queue.Queue`."""

    name: str = strawberry.field(description="Name of the queue, unique in its cluster.")
    id: strawberry.ID = strawberry.field(description="Id PCS generated for the queue.")
    arn: str = strawberry.field(
        description="Amazon Resource Name of the queue "
        "(arn:aws:pcs:<region>:<account>:cluster/<clusterId>/queue/<id>)."
    )
    cluster_id: str = strawberry.field(description="Id of the cluster the queue belongs to.")
    created_at: datetime = strawberry.field(description="When the queue was created (UTC).")
    modified_at: datetime = strawberry.field(
        description="When the queue's settings or status last changed (UTC)."
    )
    compute_node_group_configurations: list[ComputeNodeGroupConfiguration] = strawberry.field(
        description="The compute node groups the queue sends jobs to; empty when none."
    )
    slurm_configuration: QueueSlurmConfiguration | None = strawberry.field(
        description="Slurm settings; null when PCS does not report them."
    )
    error_info: list[ErrorInfo] = strawberry.field(
        description="Failures PCS reports for the queue; empty when none."
    )

    @strawberry.field(description="Lifecycle state; UNKNOWN for a state added after this release.")
    def status(self, root: Parent[pcs.Queue]) -> QueueStatus:
        return known(QueueStatus, root.status)

    @strawberry.field(description="The status exactly as PCS sent it.")
    def status_raw(self, root: Parent[pcs.Queue]) -> str:
        return root.status

    @strawberry.field(description="The AWS region of the queue, e.g. us-east-1.")
    def region(self, root: Parent[pcs.Queue]) -> str:
        return region_of(root.arn)

    @strawberry.field(description="Tags on the queue (ListTagsForResource); empty when none.")
    async def tags(self, root: Parent[pcs.Queue], info: strawberry.Info) -> list[Tag]:
        return tag_list(await resources(info).tags(region_of(root.arn), root.arn))

    @strawberry.field(description="The cluster of the queue; null when PCS no longer has it.")
    async def cluster(self, root: Parent[pcs.Queue], info: strawberry.Info) -> Cluster | None:
        found = await resources(info).cluster(region_of(root.arn), root.cluster_id)
        return found  # type: ignore[return-value]

    @strawberry.field(
        description="The compute node groups of computeNodeGroupConfigurations, in that "
        "order; an entry is null when PCS no longer has that group."
    )
    async def compute_node_groups(
        self, root: Parent[pcs.Queue], info: strawberry.Info
    ) -> list[ComputeNodeGroup | None]:
        graph, region = resources(info), region_of(root.arn)

        async def one(group_id: str | None) -> PcsComputeNodeGroup | None:
            if group_id is None:
                return None
            return await graph.compute_node_group(region, root.cluster_id, group_id)

        configs = root.compute_node_group_configurations
        found = await asyncio.gather(*(one(c.compute_node_group_id) for c in configs))
        return list(found)  # type: ignore[arg-type]


@strawberry.type(description="A queue in a page of queues, with its cursor.")
class QueueEdge:
    @strawberry.field(description="An opaque cursor: pass it as after to go on after this edge.")
    def cursor(self, root: Parent[EdgeRoot]) -> str:
        return root.cursor

    @strawberry.field(description="The queue. " + NODE_DESCRIPTION)
    async def node(self, root: Parent[EdgeRoot], info: strawberry.Info) -> Queue | None:
        return await graph.edge_node(info, root)  # type: ignore[no-any-return]


@strawberry.type(description="A page of a cluster's queues (ListQueues), in PCS's order.")
class QueueConnection:
    @strawberry.field(description="The page's queues with cursors.")
    def edges(self, root: Parent[PageRoot], info: strawberry.Info) -> list[QueueEdge]:
        return graph.edges(info, root)  # type: ignore[return-value]

    @strawberry.field(description="The page's queues, without cursors. " + NODE_DESCRIPTION)
    def nodes(self, root: Parent[PageRoot], info: strawberry.Info) -> list[Queue | None]:
        return graph.nodes(info, root)  # type: ignore[return-value]

    @strawberry.field(description="Whether more pages follow, and where.")
    def page_info(self, root: Parent[PageRoot]) -> PageInfo:
        return page_info(root)

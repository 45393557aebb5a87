"""GraphQL types shared by the resource graph: tags, map entries, pages, the cluster list.

Fields that reach beyond their own object (a queue's cluster, its node groups, any
resource's tags) read `info.context.resources`, an object with the `ResourceGraph`
methods; the request context provides it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import strawberry

from gateway.graphql.types import Cluster
from gateway.pcs.summary import Tags

if TYPE_CHECKING:
    from gateway.pcs.compute_node_group import ComputeNodeGroup as PcsComputeNodeGroup
    from gateway.service.clusters import ClusterAnswer


class ResourceGraph(Protocol):
    """What resolvers of related resources ask of `info.context.resources`."""

    async def cluster(self, region: str, identifier: str) -> ClusterAnswer | None:
        """A cluster by name or id; None when PCS has none."""

    async def compute_node_group(
        self, region: str, cluster_id: str, identifier: str
    ) -> PcsComputeNodeGroup | None:
        """A compute node group of a cluster by name or id; None when PCS has none."""

    async def tags(self, region: str, arn: str) -> Tags:
        """The tags of a resource by ARN."""


def resources(info: strawberry.Info) -> ResourceGraph:
    """The request's resource graph."""
    graph: ResourceGraph = info.context.resources
    return graph


def region_of(arn: str) -> str:
    """The region a PCS ARN names (arn:aws:pcs:<region>:<account>:...)."""
    return arn.split(":")[3]


@strawberry.type(description="A tag on a PCS resource: a key and its value.")
class Tag:
    key: str = strawberry.field(description="The tag's key, e.g. team.")
    value: str = strawberry.field(description="The tag's value; may be empty.")


@strawberry.type(description="One entry of a map PCS sends: a key and its value.")
class KeyValue:
    key: str = strawberry.field(description="The entry's key.")
    value: str = strawberry.field(description="The entry's value.")


def tag_list(tags: Tags) -> list[Tag]:
    """Tags as the GraphQL list, sorted by key."""
    return [Tag(key=k, value=v) for k, v in tags]


@strawberry.type(description="Where a page of a list stands: pages go forward only.")
class PageInfo:
    has_next_page: bool = strawberry.field(
        description="True when another page follows; ask for it with after: endCursor."
    )
    has_previous_page: bool = strawberry.field(
        description="Always false: pages go forward only, as PCS's do."
    )
    start_cursor: str | None = strawberry.field(
        description="The cursor of the first edge of this page; null when the page is empty."
    )
    end_cursor: str | None = strawberry.field(
        description="The cursor to pass as after for the next page; null when the page is empty."
    )


@strawberry.type(description="A cluster in a page of clusters, with its cursor.")
class ClusterEdge:
    cursor: str = strawberry.field(description="An opaque cursor: pass it as after to go on.")
    node: Cluster = strawberry.field(description="The cluster.")


@strawberry.type(description="A page of clusters (ListClusters), in PCS's order.")
class ClusterConnection:
    edges: list[ClusterEdge] = strawberry.field(description="The page's clusters with cursors.")
    nodes: list[Cluster] = strawberry.field(description="The page's clusters, without cursors.")
    page_info: PageInfo = strawberry.field(description="Whether more pages follow, and where.")

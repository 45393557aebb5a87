"""GraphQL types shared by the resource graph: tags, map entries, pages, the cluster list.

Fields that reach beyond their own object (a queue's cluster, its node groups, any
resource's tags) read `info.context.resources`, an object with the `ResourceGraph`
methods; the request context provides it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import strawberry
from strawberry import Parent

from gateway.graphql import graph
from gateway.graphql.graph import EdgeRoot, PageRoot
from gateway.graphql.types import Cluster, Tag
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


def page_info(root: PageRoot) -> PageInfo:
    """Where a page stands."""
    return PageInfo(
        has_next_page=root.has_next_page,
        has_previous_page=False,
        start_cursor=root.cursors[0] if root.cursors else None,
        end_cursor=root.cursors[-1] if root.cursors else None,
    )


NODE_DESCRIPTION = (
    "Null, with an error at its path, when its details were asked for and PCS failed to "
    "give them; the other nodes keep theirs."
)


@strawberry.type(description="A cluster in a page of clusters, with its cursor.")
class ClusterEdge:
    @strawberry.field(description="An opaque cursor: pass it as after to go on after this edge.")
    def cursor(self, root: Parent[EdgeRoot]) -> str:
        return root.cursor

    @strawberry.field(description="The cluster. " + NODE_DESCRIPTION)
    async def node(self, root: Parent[EdgeRoot], info: strawberry.Info) -> Cluster | None:
        return await graph.edge_node(info, root)  # type: ignore[no-any-return]


@strawberry.type(description="A page of clusters (ListClusters), in PCS's order.")
class ClusterConnection:
    @strawberry.field(description="The page's clusters with cursors.")
    def edges(self, root: Parent[PageRoot], info: strawberry.Info) -> list[ClusterEdge]:
        return graph.edges(info, root)  # type: ignore[return-value]

    @strawberry.field(description="The page's clusters, without cursors. " + NODE_DESCRIPTION)
    def nodes(self, root: Parent[PageRoot], info: strawberry.Info) -> list[Cluster | None]:
        return graph.nodes(info, root)  # type: ignore[return-value]

    @strawberry.field(description="Whether more pages follow, and where.")
    def page_info(self, root: Parent[PageRoot]) -> PageInfo:
        return page_info(root)

"""The resource graph of one request: pages, their nodes, related resources and tags.

Lists page through PCS with signed cursors (`cursors.py`). A node costs its Get call only
when the selection asks for more than its summary holds; node Gets and tag calls go through
one DataLoader per kind, so a request looks each resource up once, at most
`fetch_concurrency` at a time. Every answer's freshness is noted for the answer cache, and
a value served stale is reported at its path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from strawberry.dataloader import DataLoader
from strawberry.types import Info
from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField, Selection

from gateway.graphql.cursors import MAX_PAGE_SIZE, Cursors, Position, check_first
from gateway.graphql.errors import GatewayError
from gateway.pcs import errors
from gateway.pcs.compute_node_group import ComputeNodeGroup
from gateway.pcs.queue import Queue
from gateway.pcs.summary import ClusterSummary, Page, Tags
from gateway.service.clusters import ClusterAnswer
from gateway.service.regions import RegionServices
from gateway.service.resources import Answer

S = TypeVar("S")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: What a list's summary holds of each type, and what needs no Get (ids, tags, parents).
SUMMARY_FIELDS = {
    "Cluster": frozenset(
        {"name", "id", "arn", "status", "statusRaw", "createdAt", "modifiedAt", "region"}
        | {"tags", "queues", "computeNodeGroups", "freshness", "__typename"}
    ),
    "Queue": frozenset(
        {"name", "id", "arn", "clusterId", "status", "statusRaw", "createdAt", "modifiedAt"}
        | {"region", "tags", "cluster", "__typename"}
    ),
    "ComputeNodeGroup": frozenset(
        {"name", "id", "arn", "clusterId", "status", "statusRaw", "createdAt", "modifiedAt"}
        | {"region", "tags", "cluster", "__typename"}
    ),
}


@dataclass(frozen=True, slots=True)
class ListedCluster:
    """A cluster as its page of ListClusters shows it: the summary, as fresh as the page."""

    cluster: ClusterSummary
    fetched_at: float
    fresh_until: float
    stale: bool
    request_id: str | None

    def age_seconds(self, now: float | None = None) -> float:
        """Seconds since PCS sent the page."""
        return max(0.0, (time.time() if now is None else now) - self.fetched_at)

    @property
    def fetched_at_datetime(self) -> datetime:
        """When PCS sent the page."""
        return datetime.fromtimestamp(self.fetched_at, tz=UTC)


NodeLoad = Callable[[Info[Any, Any], Any, bool, list[str | int]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class PageRoot:
    """A page as its connection type resolves it."""

    type_name: str
    items: tuple[Any, ...]
    cursors: tuple[str, ...]
    has_next_page: bool
    load: NodeLoad


@dataclass(frozen=True, slots=True)
class EdgeRoot:
    """One edge of a page."""

    page: PageRoot
    index: int
    cursor: str


def needs_details(info: Info[Any, Any], type_name: str) -> bool:
    """True when the field's selection asks for more than the summary of `type_name` holds."""
    summary = SUMMARY_FIELDS[type_name]

    def beyond(selections: Iterable[Selection]) -> bool:
        for selection in selections:
            if isinstance(selection, SelectedField):
                if selection.name not in summary:
                    return True
            elif isinstance(selection, FragmentSpread | InlineFragment) and beyond(
                selection.selections
            ):
                return True
        return False

    return any(beyond(field.selections) for field in info.selected_fields)


def edges(info: Info[Any, Any], page: PageRoot) -> list[EdgeRoot]:
    """The edges of a page."""
    return [EdgeRoot(page, index, cursor) for index, cursor in enumerate(page.cursors)]


async def edge_node(info: Info[Any, Any], edge: EdgeRoot) -> Any:
    """An edge's node: its summary, or its details when the selection asks for them."""
    page = edge.page
    details = needs_details(info, page.type_name)
    return await page.load(info, page.items[edge.index], details, list(info.path.as_list()))


def nodes(info: Info[Any, Any], page: PageRoot) -> list[Awaitable[Any]]:
    """A page's nodes; one that fails is null at its index with its own error."""
    details = needs_details(info, page.type_name)
    path = list(info.path.as_list())
    return [page.load(info, item, details, [*path, n]) for n, item in enumerate(page.items)]


class RequestGraph:
    """One request's loaders and notes; resolvers reach it as `info.context.resources`."""

    def __init__(self, context: Any) -> None:
        self._context = context
        self._gate = asyncio.Semaphore(context.settings.fetch_concurrency)
        self._loaders: dict[str, DataLoader[Any, Any]] = {}

    # What resolvers ask.

    def region(self, region: str | None) -> RegionServices:
        """The services of `region` (the default when None); UnknownRegion otherwise."""
        regions = self._context.regions
        if regions is None:
            raise errors.UpstreamUnavailable("The gateway is starting.")
        found: RegionServices = regions.get(region)
        return found

    async def cluster(self, region: str, identifier: str) -> ClusterAnswer | None:
        """A cluster by name or id; None when PCS has none (a back-reference)."""
        try:
            return await self.cluster_details(region, identifier, None)
        except errors.ResourceNotFound:
            return None

    async def cluster_details(
        self,
        region: str,
        identifier: str,
        not_before: datetime | None,
        path: list[str | int] | None = None,
    ) -> ClusterAnswer:
        """A cluster with every field, refreshed when older than `not_before`."""
        services = self.region(region)

        async def fetch(key: tuple[str, str]) -> ClusterAnswer:
            answer = await services.clusters.get(key[1])
            return answer

        answer: ClusterAnswer = await self._load("cluster", (region, identifier), fetch)
        if not_before is not None and answer.cluster.modified_at < not_before:
            # The page is newer than the copy: what a node shows never contradicts its page.
            answer = await self._within(services.clusters.get(identifier, refresh=True))
        self.note(answer, path)
        return answer

    async def compute_node_group(
        self, region: str, cluster_id: str, identifier: str
    ) -> ComputeNodeGroup | None:
        """A compute node group of a cluster by name or id; None when PCS has none."""
        try:
            return await self.compute_node_group_details(region, cluster_id, identifier, None)
        except errors.ResourceNotFound:
            return None

    async def compute_node_group_details(
        self,
        region: str,
        cluster_id: str,
        identifier: str,
        not_before: datetime | None,
        path: list[str | int] | None = None,
    ) -> ComputeNodeGroup:
        """A compute node group with every field; raises PcsError."""
        services = self.region(region)

        async def fetch(key: tuple[str, str, str, datetime | None]) -> Answer[ComputeNodeGroup]:
            return await services.resources.compute_node_group(key[1], key[2], not_before=key[3])

        key = (region, cluster_id, identifier, not_before)
        answer: Answer[ComputeNodeGroup] = await self._load("computeNodeGroup", key, fetch)
        self.note(answer, path)
        return answer.value

    async def queue_details(
        self,
        region: str,
        cluster_id: str,
        identifier: str,
        not_before: datetime | None,
        path: list[str | int] | None = None,
    ) -> Queue:
        """A queue with every field; raises PcsError."""
        services = self.region(region)

        async def fetch(key: tuple[str, str, str, datetime | None]) -> Answer[Queue]:
            return await services.resources.queue(key[1], key[2], not_before=key[3])

        key = (region, cluster_id, identifier, not_before)
        answer: Answer[Queue] = await self._load("queue", key, fetch)
        self.note(answer, path)
        return answer.value

    async def tags(self, region: str, arn: str) -> Tags:
        """The tags of a resource by ARN."""
        services = self.region(region)

        async def fetch(key: tuple[str, str]) -> Answer[Tags]:
            return await services.resources.tags_of(key[1])

        answer: Answer[Tags] = await self._load("tags", (region, arn), fetch)
        self.note(answer)
        return answer.value

    # Pages.

    async def page(
        self,
        info: Info[Any, Any],
        *,
        type_name: str,
        listing: str,
        first: int,
        after: str | None,
        fetch: Callable[[str | None, int], Awaitable[Answer[Page[Any]]]],
        load: Callable[[Answer[Page[Any]]], NodeLoad],
    ) -> PageRoot:
        """One page of a list from `after` on, `first` items at most."""
        check_first(first)
        cursors: Cursors = self._context.cursors
        position = Position(None) if after is None else cursors.read(listing, after)
        size = min(MAX_PAGE_SIZE, position.skip + first)
        try:
            answer = await self._within(fetch(position.token, size))
        except errors.ValidationFailed as exc:
            if position.token is None:
                raise
            raise GatewayError(
                "PCS no longer accepts this cursor (its pages expire after a day): start "
                "again from the first page, without after.",
                "BAD_USER_INPUT",
                **exc.details(),
            ) from None
        self.note(answer, list(info.path.as_list()))
        page = answer.value
        items = page.items[position.skip : position.skip + first]
        marks: list[str] = []
        for n in range(len(items)):
            after_it = position.skip + n + 1
            if after_it == len(page.items) and page.next_token is not None:
                at = Position(page.next_token, 0)
            else:
                at = Position(position.token, after_it)
            marks.append(cursors.make(listing, at))
        has_next = position.skip + len(items) < len(page.items) or page.next_token is not None
        return PageRoot(type_name, items, tuple(marks), has_next, load(answer))

    # Notes for the answer cache and the stale report.

    def note(
        self, answer: Answer[Any] | ClusterAnswer, path: list[str | int] | None = None
    ) -> None:
        """An answer the response is built from: its freshness, and whether it is stale."""
        context = self._context
        key = answer.cluster.id if isinstance(answer, ClusterAnswer) else answer.key
        context.note_resource(key, answer.fetched_at, answer.fresh_until)
        if answer.stale:
            context.volatile = True
            context.stale.append({"path": path or [], "ageSeconds": round(answer.age_seconds(), 3)})

    async def _load(self, kind: str, key: K, fetch: Callable[[K], Awaitable[V]]) -> V:
        loader = self._loaders.get(kind)
        if loader is None:
            gate = self._gate

            async def one(item: K) -> V:
                async with gate:
                    return await fetch(item)

            async def batch(keys: list[K]) -> list[V | BaseException]:
                return await asyncio.gather(*(one(k) for k in keys), return_exceptions=True)

            loader = self._loaders[kind] = DataLoader(load_fn=batch)
        found: V = await self._within(loader.load(key))
        return found

    async def _within(self, lookup: Awaitable[V]) -> V:
        """The lookup's answer, or DeadlineExceeded once the request's deadline has passed."""
        context = self._context
        try:
            async with asyncio.timeout(max(0.0, context.deadline - time.monotonic())):
                return await lookup
        except TimeoutError:
            raise errors.DeadlineExceeded(
                "PCS did not answer within the request's deadline; retry later.",
                detail="request deadline passed",
            ) from None


def region_of(arn: str) -> str:
    """The region a PCS ARN names (arn:aws:pcs:<region>:<account>:...)."""
    return arn.split(":")[3]


def _graph(info: Info[Any, Any]) -> RequestGraph:
    graph: RequestGraph = info.context.resources
    return graph


async def cluster_page(
    info: Info[Any, Any], region: str | None, first: int, after: str | None
) -> PageRoot:
    """A page of ListClusters in `region` (the default when None)."""
    graph = _graph(info)
    services = graph.region(region)
    name = services.name

    def load(page: Answer[Page[Any]]) -> NodeLoad:
        async def node(
            info: Info[Any, Any], summary: ClusterSummary, details: bool, path: list[str | int]
        ) -> ClusterAnswer | ListedCluster:
            if not details:
                return ListedCluster(
                    summary, page.fetched_at, page.fresh_until, page.stale, page.request_id
                )
            return await graph.cluster_details(name, summary.id, summary.modified_at, path)

        return node

    return await graph.page(
        info,
        type_name="Cluster",
        listing=f"{name}|clusters",
        first=first,
        after=after,
        fetch=services.resources.cluster_page,
        load=load,
    )


async def queue_page(
    info: Info[Any, Any], cluster_arn: str, cluster_id: str, first: int, after: str | None
) -> PageRoot:
    """A page of a cluster's ListQueues."""
    graph = _graph(info)
    region = region_of(cluster_arn)
    services = graph.region(region)

    async def node(info: Info[Any, Any], summary: Any, details: bool, path: list[str | int]) -> Any:
        if not details:
            return summary
        return await graph.queue_details(region, cluster_id, summary.id, summary.modified_at, path)

    async def fetch(token: str | None, size: int) -> Answer[Page[Any]]:
        page: Answer[Page[Any]] = await services.resources.queue_page(cluster_id, token, size)
        return page

    return await graph.page(
        info,
        type_name="Queue",
        listing=f"{region}|queues|{cluster_id}",
        first=first,
        after=after,
        fetch=fetch,
        load=lambda _: node,
    )


async def compute_node_group_page(
    info: Info[Any, Any], cluster_arn: str, cluster_id: str, first: int, after: str | None
) -> PageRoot:
    """A page of a cluster's ListComputeNodeGroups."""
    graph = _graph(info)
    region = region_of(cluster_arn)
    services = graph.region(region)

    async def node(info: Info[Any, Any], summary: Any, details: bool, path: list[str | int]) -> Any:
        if not details:
            return summary
        return await graph.compute_node_group_details(
            region, cluster_id, summary.id, summary.modified_at, path
        )

    async def fetch(token: str | None, size: int) -> Answer[Page[Any]]:
        resources = services.resources
        page: Answer[Page[Any]] = await resources.compute_node_group_page(cluster_id, token, size)
        return page

    return await graph.page(
        info,
        type_name="ComputeNodeGroup",
        listing=f"{region}|computeNodeGroups|{cluster_id}",
        first=first,
        after=after,
        fetch=fetch,
        load=lambda _: node,
    )

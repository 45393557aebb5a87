"""What the list operations return: summaries of clusters, queues and node groups, and tags.

A summary carries name, id, ARN, timestamps and status; the rest of a resource costs its
Get call. Tags are (key, value) pairs sorted by key, as ListTagsForResource's map reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from gateway.pcs.wire import instant

T = TypeVar("T")

#: A resource's tags: (key, value) pairs, sorted by key.
Tags = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class ClusterSummary:
    """A cluster as ListClusters reports it."""

    name: str
    id: str
    arn: str
    created_at: datetime
    modified_at: datetime
    status: str


@dataclass(frozen=True, slots=True)
class QueueSummary:
    """A queue as ListQueues reports it."""

    name: str
    id: str
    arn: str
    cluster_id: str
    created_at: datetime
    modified_at: datetime
    status: str


@dataclass(frozen=True, slots=True)
class ComputeNodeGroupSummary:
    """A compute node group as ListComputeNodeGroups reports it."""

    name: str
    id: str
    arn: str
    cluster_id: str
    created_at: datetime
    modified_at: datetime
    status: str


M = TypeVar("M", QueueSummary, ComputeNodeGroupSummary)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing, and PCS's token for the next one (None on the last page)."""

    items: tuple[T, ...]
    next_token: str | None


def parse_cluster_summary(wire: Mapping[str, Any]) -> ClusterSummary:
    """A ClusterSummary from one item of ListClusters' `clusters`."""
    return ClusterSummary(
        name=wire["name"],
        id=wire["id"],
        arn=wire["arn"],
        created_at=instant(wire["createdAt"]),
        modified_at=instant(wire["modifiedAt"]),
        status=wire["status"],
    )


def parse_queue_summary(wire: Mapping[str, Any]) -> QueueSummary:
    """A QueueSummary from one item of ListQueues' `queues`."""
    return _member_summary(QueueSummary, wire)


def parse_compute_node_group_summary(wire: Mapping[str, Any]) -> ComputeNodeGroupSummary:
    """A ComputeNodeGroupSummary from one item of ListComputeNodeGroups' `computeNodeGroups`."""
    return _member_summary(ComputeNodeGroupSummary, wire)


def _member_summary(kind: type[M], wire: Mapping[str, Any]) -> M:
    return kind(
        name=wire["name"],
        id=wire["id"],
        arn=wire["arn"],
        cluster_id=wire["clusterId"],
        created_at=instant(wire["createdAt"]),
        modified_at=instant(wire["modifiedAt"]),
        status=wire["status"],
    )


def parse_page(
    wire: Mapping[str, Any], member: str, parse: Callable[[Mapping[str, Any]], T]
) -> Page[T]:
    """A page of a list answer: its `member` items parsed, and its nextToken."""
    items: Sequence[Mapping[str, Any]] = wire.get(member) or ()
    return Page(items=tuple(parse(item) for item in items), next_token=wire.get("nextToken"))


def parse_tags(tags: Mapping[str, str] | None) -> Tags:
    """Tags from ListTagsForResource's `tags` map, sorted by key."""
    return tuple(sorted((tags or {}).items()))

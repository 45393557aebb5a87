"""What one region of the emulated PCS holds: clusters, their queues and node groups, tags.

A seeded cluster is its GetCluster wire form, optionally with `queues`,
`computeNodeGroups` (lists of wire forms, each optionally with `tags`) and `tags` (a map);
those keys are kept apart so that each answer carries only its shape's members.
Statuses in transition settle after a while, as PCS's own do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Where a status in transition ends; None means the resource goes away.
SETTLES_TO: dict[str, str | None] = {
    "CREATING": "ACTIVE",
    "UPDATING": "ACTIVE",
    "RESUMING": "ACTIVE",
    "SUSPENDING": "SUSPENDED",
    "DELETING": None,
}
#: Keys of a seeded cluster, queue or node group that are not members of its shape.
RESOURCE_KEYS = frozenset({"queues", "computeNodeGroups", "tags"})

Wire = dict[str, Any]


def find(resources: Mapping[str, Wire], identifier: str) -> Wire | None:
    """A resource by name or id."""
    found = resources.get(identifier)
    if found is not None:
        return found
    return next((r for r in resources.values() if r["id"] == identifier), None)


@dataclass
class Population:
    """One region's resources; the maps of queues and node groups are keyed by cluster id."""

    clusters: dict[str, Wire] = field(default_factory=dict)
    queues: dict[str, dict[str, Wire]] = field(default_factory=dict)
    node_groups: dict[str, dict[str, Wire]] = field(default_factory=dict)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    #: When each resource in transition settles, by ARN.
    settles_at: dict[str, float] = field(default_factory=dict)

    def seed(self, clusters: Iterable[Wire]) -> None:
        """Replace everything with `clusters` (wire forms, with their resources)."""
        self.clusters.clear()
        self.queues.clear()
        self.node_groups.clear()
        self.tags.clear()
        self.settles_at.clear()
        for cluster in clusters:
            self.store(cluster)

    def store(self, seeded: Wire) -> None:
        """Add or replace a cluster and the resources it carries; a bad one changes nothing."""
        cluster = {k: v for k, v in seeded.items() if k not in RESOURCE_KEYS}
        tags = {cluster["arn"]: seeded.get("tags")}
        members: dict[str, dict[str, Wire]] = {"queues": {}, "computeNodeGroups": {}}
        for kind, found in members.items():
            for item in seeded.get(kind) or ():
                wire = {k: v for k, v in item.items() if k not in RESOURCE_KEYS}
                found[wire["name"]] = wire
                tags[wire["arn"]] = item.get("tags")
        ident = cluster["id"]
        self.remove(cluster["name"])
        self.clusters[cluster["name"]] = cluster
        self.queues[ident] = members["queues"]
        self.node_groups[ident] = members["computeNodeGroups"]
        for arn, given in tags.items():
            self._tag(arn, given)

    def remove(self, name: str) -> None:
        """Forget a cluster, its queues, node groups and tags."""
        cluster = self.clusters.pop(name, None)
        if cluster is None:
            return
        for store in (self.queues, self.node_groups):
            for item in store.pop(cluster["id"], {}).values():
                self._forget(item["arn"])
        self._forget(cluster["arn"])

    def cluster(self, identifier: str) -> Wire | None:
        """A cluster by name or id."""
        return find(self.clusters, identifier)

    def resource(self, arn: str) -> Wire | None:
        """A cluster, queue or node group by ARN."""
        for cluster in self.clusters.values():
            if cluster["arn"] == arn:
                return cluster
        for store in (self.queues, self.node_groups):
            for members in store.values():
                for item in members.values():
                    if item["arn"] == arn:
                        return item
        return None

    def set_status(self, resource: Wire, status: str, now: float, settle_seconds: float) -> None:
        """Change a status as PCS would (modifiedAt moves); a transition settles later."""
        resource["status"] = status
        resource["modifiedAt"] = now
        if status in SETTLES_TO:
            self.settles_at[resource["arn"]] = now + settle_seconds
        else:
            self.settles_at.pop(resource["arn"], None)

    def settle(self, now: float) -> None:
        """Finish every transition that is due by `now`."""
        for arn, due in sorted(self.settles_at.items(), key=lambda item: item[1]):
            if due > now:
                continue
            del self.settles_at[arn]
            resource = self.resource(arn)
            if resource is None:
                continue
            outcome = SETTLES_TO.get(resource["status"], resource["status"])
            if outcome is None:
                self._delete(resource)
            else:
                resource["status"] = outcome
                resource["modifiedAt"] = due

    def _delete(self, resource: Wire) -> None:
        if resource.get("clusterId") is None:
            self.remove(resource["name"])
            return
        for store in (self.queues, self.node_groups):
            members = store.get(resource["clusterId"], {})
            if members.get(resource["name"]) is resource:
                del members[resource["name"]]
        self._forget(resource["arn"])

    def _tag(self, arn: str, tags: Mapping[str, str] | None) -> None:
        if tags:
            self.tags[arn] = dict(tags)

    def _forget(self, arn: str) -> None:
        self.tags.pop(arn, None)
        self.settles_at.pop(arn, None)

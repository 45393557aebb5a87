"""The services of each region the gateway serves, found by the region a field asks for.

Resolvers reach a region's services through `Regions.get(region)`; no argument means the
default region. Each region has its own PCS client (with its rate budget and breaker) and
its own services, so one region's state never answers for another.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from gateway.pcs.client import PcsClient
from gateway.service.clusters import ClusterService
from gateway.service.resources import ResourceServices


class UnknownRegion(ValueError):
    """A region the gateway does not serve: refused before any PCS call."""


@dataclass(frozen=True, slots=True)
class RegionServices:
    """One region's PCS client and the services that call through it."""

    name: str
    client: PcsClient
    clusters: ClusterService
    #: Queues, compute node groups, tags and list pages.
    resources: ResourceServices


class Regions:
    """The regions served, the default first."""

    def __init__(self, services: Mapping[str, RegionServices], *, default: str) -> None:
        if default not in services:
            raise ValueError(f"the default region {default!r} has no services")
        self._services = dict(services)
        self.default = default
        self.names: tuple[str, ...] = (
            default,
            *(name for name in services if name != default),
        )

    def get(self, region: str | None = None) -> RegionServices:
        """The services of `region` (the default when None); raises UnknownRegion."""
        if region is None:
            return self._services[self.default]
        found = self._services.get(region)
        if found is None:
            raise UnknownRegion(
                f"This gateway does not serve the region {region[:32]!r}; "
                f"it serves {', '.join(self.names)}."
            )
        return found

    def __iter__(self) -> Iterator[RegionServices]:
        return (self._services[name] for name in self.names)

    def __len__(self) -> int:
        return len(self._services)

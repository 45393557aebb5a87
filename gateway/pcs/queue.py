"""A PCS queue as the gateway's domain object, parsed from GetQueue's `queue` member.

Enumerated members keep the raw string PCS sent, as `gateway.pcs.cluster` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.pcs.wire import (
    ErrorInfo,
    SlurmCustomSetting,
    instant,
    parse_error_info,
    parse_slurm_custom_settings,
)


@dataclass(frozen=True, slots=True)
class ComputeNodeGroupConfiguration:
    """A compute node group the queue sends jobs to."""

    compute_node_group_id: str | None


@dataclass(frozen=True, slots=True)
class QueueSlurmConfiguration:
    """The queue's Slurm settings (its partition's parameters)."""

    slurm_custom_settings: tuple[SlurmCustomSetting, ...]


@dataclass(frozen=True, slots=True)
class Queue:
    """A PCS queue, every member of the service model's `Queue` shape."""

    name: str
    id: str
    arn: str
    cluster_id: str
    created_at: datetime
    modified_at: datetime
    status: str
    compute_node_group_configurations: tuple[ComputeNodeGroupConfiguration, ...]
    slurm_configuration: QueueSlurmConfiguration | None
    error_info: tuple[ErrorInfo, ...]


def parse_queue(wire: Mapping[str, Any]) -> Queue:
    """Build a Queue from the `queue` member of a GetQueue answer."""
    slurm = wire.get("slurmConfiguration")
    return Queue(
        name=wire["name"],
        id=wire["id"],
        arn=wire["arn"],
        cluster_id=wire["clusterId"],
        created_at=instant(wire["createdAt"]),
        modified_at=instant(wire["modifiedAt"]),
        status=wire["status"],
        compute_node_group_configurations=tuple(
            ComputeNodeGroupConfiguration(compute_node_group_id=c.get("computeNodeGroupId"))
            for c in wire.get("computeNodeGroupConfigurations") or ()
        ),
        slurm_configuration=None
        if slurm is None
        else QueueSlurmConfiguration(
            slurm_custom_settings=parse_slurm_custom_settings(slurm.get("slurmCustomSettings"))
        ),
        error_info=parse_error_info(wire.get("errorInfo")),
    )

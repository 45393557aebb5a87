"""A PCS compute node group as the gateway's domain object, from GetComputeNodeGroup.

Enumerated members keep the raw string PCS sent, as `gateway.pcs.cluster` does. A model map
(each record of `gresCustomSettings`) becomes (key, value) pairs in the order PCS sent them.
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

#: One record of a map: (key, value) pairs.
KeyValues = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class CustomLaunchTemplate:
    """The EC2 launch template the node group's instances start from."""

    id: str
    version: str


@dataclass(frozen=True, slots=True)
class ScalingConfiguration:
    """How few and how many instances the node group runs."""

    min_instance_count: int
    max_instance_count: int


@dataclass(frozen=True, slots=True)
class InstanceConfig:
    """An EC2 instance type the node group uses."""

    instance_type: str | None


@dataclass(frozen=True, slots=True)
class SpotOptions:
    """How Spot capacity is chosen."""

    allocation_strategy: str | None


@dataclass(frozen=True, slots=True)
class ComputeNodeGroupSlurmConfiguration:
    """The node group's Slurm settings."""

    scale_down_idle_time_in_seconds: int | None
    slurm_custom_settings: tuple[SlurmCustomSetting, ...]
    gres_custom_settings: tuple[KeyValues, ...]


@dataclass(frozen=True, slots=True)
class ScriptSource:
    """Where a lifecycle script lives."""

    script_location: str
    s3_version_id: str | None
    checksum: str | None


@dataclass(frozen=True, slots=True)
class NodeLifecycleScript:
    """A script run at a stage of a node's life."""

    name: str
    script_source: ScriptSource
    arguments: tuple[str, ...]
    on_error: str | None
    execution_policy: str | None


@dataclass(frozen=True, slots=True)
class NodeLifecycleStages:
    """The scripts of each stage."""

    node_bootstrapped: tuple[NodeLifecycleScript, ...]
    node_ready: tuple[NodeLifecycleScript, ...]


@dataclass(frozen=True, slots=True)
class NodeLifecycleActions:
    """Scripts run on the node group's instances, and how they are cached."""

    stages: NodeLifecycleStages
    script_caching_policy: str | None


@dataclass(frozen=True, slots=True)
class HealthMonitoring:
    """Health monitoring of running instances."""

    mode: str | None
    repair_action: str | None


@dataclass(frozen=True, slots=True)
class DeepHealthCheckOnStart:
    """The deep health check an instance runs when it starts."""

    profile: str | None
    repair_action: str | None


@dataclass(frozen=True, slots=True)
class DeepHealthChecks:
    """Deep health checks of instances."""

    on_start: DeepHealthCheckOnStart | None


@dataclass(frozen=True, slots=True)
class InstanceHealthChecks:
    """Health checks of the node group's instances."""

    health_monitoring: HealthMonitoring | None
    deep_health_checks: DeepHealthChecks | None


@dataclass(frozen=True, slots=True)
class ComputeNodeGroup:
    """A PCS compute node group, every member of the service model's `ComputeNodeGroup`."""

    name: str
    id: str
    arn: str
    cluster_id: str
    created_at: datetime
    modified_at: datetime
    status: str
    ami_id: str | None
    security_group_ids: tuple[str, ...]
    ssh_key_name: str | None
    subnet_ids: tuple[str, ...]
    purchase_option: str | None
    launch_template_mode: str | None
    custom_launch_template: CustomLaunchTemplate | None
    iam_instance_profile_arn: str
    scaling_configuration: ScalingConfiguration
    instance_configs: tuple[InstanceConfig, ...]
    spot_options: SpotOptions | None
    slurm_configuration: ComputeNodeGroupSlurmConfiguration | None
    node_lifecycle_actions: NodeLifecycleActions | None
    instance_health_checks: InstanceHealthChecks | None
    error_info: tuple[ErrorInfo, ...]


def parse_compute_node_group(wire: Mapping[str, Any]) -> ComputeNodeGroup:
    """Build a ComputeNodeGroup from the `computeNodeGroup` member of its Get answer."""
    template = wire.get("customLaunchTemplate")
    spot = wire.get("spotOptions")
    slurm = wire.get("slurmConfiguration")
    scaling = wire["scalingConfiguration"]
    return ComputeNodeGroup(
        name=wire["name"],
        id=wire["id"],
        arn=wire["arn"],
        cluster_id=wire["clusterId"],
        created_at=instant(wire["createdAt"]),
        modified_at=instant(wire["modifiedAt"]),
        status=wire["status"],
        ami_id=wire.get("amiId"),
        security_group_ids=tuple(wire.get("securityGroupIds") or ()),
        ssh_key_name=wire.get("sshKeyName"),
        subnet_ids=tuple(wire.get("subnetIds") or ()),
        purchase_option=wire.get("purchaseOption"),
        launch_template_mode=wire.get("launchTemplateMode"),
        custom_launch_template=None
        if template is None
        else CustomLaunchTemplate(id=template["id"], version=template["version"]),
        iam_instance_profile_arn=wire["iamInstanceProfileArn"],
        scaling_configuration=ScalingConfiguration(
            min_instance_count=scaling["minInstanceCount"],
            max_instance_count=scaling["maxInstanceCount"],
        ),
        instance_configs=tuple(
            InstanceConfig(instance_type=i.get("instanceType"))
            for i in wire.get("instanceConfigs") or ()
        ),
        spot_options=None
        if spot is None
        else SpotOptions(allocation_strategy=spot.get("allocationStrategy")),
        slurm_configuration=None
        if slurm is None
        else ComputeNodeGroupSlurmConfiguration(
            scale_down_idle_time_in_seconds=slurm.get("scaleDownIdleTimeInSeconds"),
            slurm_custom_settings=parse_slurm_custom_settings(slurm.get("slurmCustomSettings")),
            gres_custom_settings=tuple(
                tuple(record.items()) for record in slurm.get("gresCustomSettings") or ()
            ),
        ),
        node_lifecycle_actions=_lifecycle(wire.get("nodeLifecycleActions")),
        instance_health_checks=_health(wire.get("instanceHealthChecks")),
        error_info=parse_error_info(wire.get("errorInfo")),
    )


def _scripts(items: Any) -> tuple[NodeLifecycleScript, ...]:
    return tuple(
        NodeLifecycleScript(
            name=s["name"],
            script_source=ScriptSource(
                script_location=s["scriptSource"]["scriptLocation"],
                s3_version_id=s["scriptSource"].get("s3VersionId"),
                checksum=s["scriptSource"].get("checksum"),
            ),
            arguments=tuple(s.get("arguments") or ()),
            on_error=s.get("onError"),
            execution_policy=s.get("executionPolicy"),
        )
        for s in items or ()
    )


def _lifecycle(actions: Mapping[str, Any] | None) -> NodeLifecycleActions | None:
    if actions is None:
        return None
    stages = actions.get("stages") or {}
    return NodeLifecycleActions(
        stages=NodeLifecycleStages(
            node_bootstrapped=_scripts(stages.get("nodeBootstrapped")),
            node_ready=_scripts(stages.get("nodeReady")),
        ),
        script_caching_policy=actions.get("scriptCachingPolicy"),
    )


def _health(checks: Mapping[str, Any] | None) -> InstanceHealthChecks | None:
    if checks is None:
        return None
    monitoring = checks.get("healthMonitoring")
    deep = checks.get("deepHealthChecks")
    on_start = None if deep is None else deep.get("onStart")
    return InstanceHealthChecks(
        health_monitoring=None
        if monitoring is None
        else HealthMonitoring(
            mode=monitoring.get("mode"), repair_action=monitoring.get("repairAction")
        ),
        deep_health_checks=None
        if deep is None
        else DeepHealthChecks(
            on_start=None
            if on_start is None
            else DeepHealthCheckOnStart(
                profile=on_start.get("profile"), repair_action=on_start.get("repairAction")
            )
        ),
    )

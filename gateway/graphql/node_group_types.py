"""The GraphQL types of a PCS compute node group, from `gateway.pcs.compute_node_group`."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry
from strawberry import Parent

from gateway.graphql import graph
from gateway.graphql.graph import EdgeRoot, PageRoot, region_of
from gateway.graphql.resource_types import (
    NODE_DESCRIPTION,
    KeyValue,
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
    known_or_none,
)
from gateway.pcs import compute_node_group as pcs

_UNKNOWN = strawberry.enum_value("UNKNOWN", description=UNKNOWN_DESCRIPTION)


@strawberry.enum(description="Lifecycle state of a compute node group as PCS reports it.")
class ComputeNodeGroupStatus(Enum):
    CREATING = strawberry.enum_value("CREATING", description="PCS is creating the group.")
    ACTIVE = strawberry.enum_value("ACTIVE", description="The group can run instances.")
    UPDATING = strawberry.enum_value("UPDATING", description="A change is being applied.")
    DELETING = strawberry.enum_value("DELETING", description="PCS is deleting the group.")
    CREATE_FAILED = strawberry.enum_value(
        "CREATE_FAILED", description="Creation failed; see errorInfo."
    )
    DELETE_FAILED = strawberry.enum_value(
        "DELETE_FAILED", description="Deletion failed; see errorInfo."
    )
    UPDATE_FAILED = strawberry.enum_value(
        "UPDATE_FAILED", description="An update failed; see errorInfo."
    )
    DELETED = strawberry.enum_value("DELETED", description="The group has been deleted.")
    SUSPENDING = strawberry.enum_value(
        "SUSPENDING", description="PCS is suspending the group with its suspended cluster."
    )
    SUSPENDED = strawberry.enum_value(
        "SUSPENDED", description="The group is suspended with its cluster: no instances run."
    )
    RESUMING = strawberry.enum_value("RESUMING", description="PCS is resuming the group.")
    UNKNOWN = _UNKNOWN


@strawberry.enum(description="How the group's EC2 instances are bought.")
class PurchaseOption(Enum):
    ONDEMAND = strawberry.enum_value("ONDEMAND", description="On-Demand Instances.")
    SPOT = strawberry.enum_value("SPOT", description="Spot Instances, which EC2 may reclaim.")
    CAPACITY_BLOCK = strawberry.enum_value(
        "CAPACITY_BLOCK", description="A Capacity Block reserved for a fixed time."
    )
    INTERRUPTIBLE_CAPACITY_RESERVATION = strawberry.enum_value(
        "INTERRUPTIBLE_CAPACITY_RESERVATION",
        description="An interruptible On-Demand Capacity Reservation.",
    )
    UNKNOWN = _UNKNOWN


@strawberry.enum(description="Who manages the launch template of the group's instances.")
class LaunchTemplateMode(Enum):
    CUSTOM = strawberry.enum_value("CUSTOM", description="The owner's launch template.")
    MANAGED = strawberry.enum_value("MANAGED", description="A template PCS manages.")
    UNKNOWN = _UNKNOWN


@strawberry.enum(description="How Spot capacity is chosen.")
class SpotAllocationStrategy(Enum):
    LOWEST_PRICE = strawberry.enum_value(
        "lowest-price", description="The lowest-priced pools (PCS: lowest-price)."
    )
    CAPACITY_OPTIMIZED = strawberry.enum_value(
        "capacity-optimized", description="The pools with most capacity (capacity-optimized)."
    )
    PRICE_CAPACITY_OPTIMIZED = strawberry.enum_value(
        "price-capacity-optimized",
        description="Pools by capacity, then price (price-capacity-optimized).",
    )
    UNKNOWN = _UNKNOWN


@strawberry.enum(description="What happens when a lifecycle script fails.")
class OnError(Enum):
    TERMINATE = strawberry.enum_value("TERMINATE", description="The instance is terminated.")
    STOP_SEQUENCE = strawberry.enum_value(
        "STOP_SEQUENCE", description="The stage's later scripts do not run."
    )
    CONTINUE = strawberry.enum_value("CONTINUE", description="The next script runs anyway.")
    UNKNOWN = _UNKNOWN


@strawberry.enum(description="On which boots a lifecycle script runs.")
class ExecutionPolicy(Enum):
    FIRST_BOOT_ONLY = strawberry.enum_value(
        "FIRST_BOOT_ONLY", description="Only on an instance's first boot."
    )
    EVERY_BOOT = strawberry.enum_value("EVERY_BOOT", description="On every boot.")
    UNKNOWN = _UNKNOWN


@strawberry.enum(description="How instances cache lifecycle scripts.")
class ScriptCachingPolicy(Enum):
    CACHE_ONCE = strawberry.enum_value(
        "CACHE_ONCE", description="Fetched once, kept across reboots."
    )
    REFRESH_ON_REBOOT = strawberry.enum_value(
        "REFRESH_ON_REBOOT", description="Fetched again on every reboot."
    )
    UNKNOWN = _UNKNOWN


@strawberry.enum(description="Whether health monitoring of instances is on.")
class HealthMonitoringMode(Enum):
    NONE = strawberry.enum_value("NONE", description="Health monitoring is off.")
    STANDARD = strawberry.enum_value("STANDARD", description="Health monitoring is on.")
    UNKNOWN = _UNKNOWN


@strawberry.enum(description="What PCS does with an instance that fails a health check.")
class RepairAction(Enum):
    AUTO = strawberry.enum_value("AUTO", description="PCS chooses the repair.")
    REPLACE = strawberry.enum_value("REPLACE", description="The instance is replaced.")
    ISOLATE = strawberry.enum_value(
        "ISOLATE", description="The node is drained and kept for inspection."
    )
    NONE = strawberry.enum_value("NONE", description="Nothing: the failure is only reported.")
    UNKNOWN = _UNKNOWN


@strawberry.enum(description="How thorough the deep health check at start is.")
class DeepHealthCheckProfile(Enum):
    NONE = strawberry.enum_value("NONE", description="No deep health check.")
    QUICK = strawberry.enum_value("QUICK", description="A quick check.")
    MEDIUM = strawberry.enum_value("MEDIUM", description="A check of medium length.")
    LONG = strawberry.enum_value("LONG", description="A long, thorough check.")
    UNKNOWN = _UNKNOWN


@strawberry.type(description="The EC2 launch template the group's instances start from.")
class CustomLaunchTemplate:
    id: str = strawberry.field(description="Id of the launch template.")
    version: str = strawberry.field(description="Version of the launch template.")


@strawberry.type(description="How few and how many instances the group runs.")
class ScalingConfiguration:
    min_instance_count: int = strawberry.field(description="Instances that always run.")
    max_instance_count: int = strawberry.field(description="Most instances the group runs.")


@strawberry.type(description="An EC2 instance type the group uses.")
class InstanceConfig:
    instance_type: str | None = strawberry.field(
        description="The instance type, e.g. hpc7a.96xlarge; null when PCS does not report it."
    )


@strawberry.type(description="How Spot capacity is chosen for the group.")
class SpotOptions:
    @strawberry.field(description="The strategy; null when absent, UNKNOWN for a newer one.")
    def allocation_strategy(self, root: Parent[pcs.SpotOptions]) -> SpotAllocationStrategy | None:
        return known_or_none(SpotAllocationStrategy, root.allocation_strategy)

    @strawberry.field(description="The strategy exactly as PCS sent it; null when absent.")
    def allocation_strategy_raw(self, root: Parent[pcs.SpotOptions]) -> str | None:
        return root.allocation_strategy


@strawberry.type(description="Slurm settings of a compute node group.")
class ComputeNodeGroupSlurmConfiguration:
    scale_down_idle_time_in_seconds: int | None = strawberry.field(
        description="Seconds a dynamic node stays idle before it is terminated; null when "
        "PCS does not report it."
    )
    slurm_custom_settings: list[SlurmCustomSetting] = strawberry.field(
        description="Node parameters set by the owner; empty when none."
    )

    @strawberry.field(
        description="Generic resources (GRES) of the nodes: one list of entries per record, "
        "e.g. [{key: Name, value: gpu}, {key: Count, value: 8}]; empty when none."
    )
    def gres_custom_settings(
        self, root: Parent[pcs.ComputeNodeGroupSlurmConfiguration]
    ) -> list[list[KeyValue]]:
        return [
            [KeyValue(key=k, value=v) for k, v in record] for record in root.gres_custom_settings
        ]


@strawberry.type(description="Where a lifecycle script is stored.")
class ScriptSource:
    script_location: str = strawberry.field(description="S3 or HTTPS URI of the script.")
    s3_version_id: str | None = strawberry.field(
        description="S3 object version of the script; null for the latest."
    )
    checksum: str | None = strawberry.field(
        description="SHA-256 of the script as 64 hex digits; null when not pinned."
    )


@strawberry.type(description="A script run at one stage of an instance's life.")
class NodeLifecycleScript:
    name: str = strawberry.field(description="Name of the script.")
    script_source: ScriptSource = strawberry.field(description="Where the script is stored.")
    arguments: list[str] = strawberry.field(
        description="Arguments passed to the script; empty when none."
    )

    @strawberry.field(description="What a failure does; null when absent, UNKNOWN for newer.")
    def on_error(self, root: Parent[pcs.NodeLifecycleScript]) -> OnError | None:
        return known_or_none(OnError, root.on_error)

    @strawberry.field(description="onError exactly as PCS sent it; null when absent.")
    def on_error_raw(self, root: Parent[pcs.NodeLifecycleScript]) -> str | None:
        return root.on_error

    @strawberry.field(description="On which boots it runs; null when absent, UNKNOWN for newer.")
    def execution_policy(self, root: Parent[pcs.NodeLifecycleScript]) -> ExecutionPolicy | None:
        return known_or_none(ExecutionPolicy, root.execution_policy)

    @strawberry.field(description="executionPolicy exactly as PCS sent it; null when absent.")
    def execution_policy_raw(self, root: Parent[pcs.NodeLifecycleScript]) -> str | None:
        return root.execution_policy


@strawberry.type(description="The lifecycle scripts of each stage of an instance's life.")
class NodeLifecycleStages:
    node_bootstrapped: list[NodeLifecycleScript] = strawberry.field(
        description="Scripts run once the instance has booted; empty when none."
    )
    node_ready: list[NodeLifecycleScript] = strawberry.field(
        description="Scripts run when the node is ready for jobs; empty when none."
    )


@strawberry.type(description="Scripts run on the group's instances, and how they are cached.")
class NodeLifecycleActions:
    stages: NodeLifecycleStages = strawberry.field(description="The scripts of each stage.")

    @strawberry.field(description="The caching policy; null when absent, UNKNOWN for newer.")
    def script_caching_policy(
        self, root: Parent[pcs.NodeLifecycleActions]
    ) -> ScriptCachingPolicy | None:
        return known_or_none(ScriptCachingPolicy, root.script_caching_policy)

    @strawberry.field(description="scriptCachingPolicy exactly as PCS sent it; null when absent.")
    def script_caching_policy_raw(self, root: Parent[pcs.NodeLifecycleActions]) -> str | None:
        return root.script_caching_policy


@strawberry.type(description="Health monitoring of the group's running instances.")
class HealthMonitoring:
    @strawberry.field(description="Whether it is on; null when absent, UNKNOWN for newer.")
    def mode(self, root: Parent[pcs.HealthMonitoring]) -> HealthMonitoringMode | None:
        return known_or_none(HealthMonitoringMode, root.mode)

    @strawberry.field(description="The mode exactly as PCS sent it; null when absent.")
    def mode_raw(self, root: Parent[pcs.HealthMonitoring]) -> str | None:
        return root.mode

    @strawberry.field(description="The repair; null when absent, UNKNOWN for a newer one.")
    def repair_action(self, root: Parent[pcs.HealthMonitoring]) -> RepairAction | None:
        return known_or_none(RepairAction, root.repair_action)

    @strawberry.field(description="repairAction exactly as PCS sent it; null when absent.")
    def repair_action_raw(self, root: Parent[pcs.HealthMonitoring]) -> str | None:
        return root.repair_action


@strawberry.type(description="The deep health check an instance runs when it starts.")
class DeepHealthCheckOnStart:
    @strawberry.field(description="How thorough; null when absent, UNKNOWN for a newer one.")
    def profile(self, root: Parent[pcs.DeepHealthCheckOnStart]) -> DeepHealthCheckProfile | None:
        return known_or_none(DeepHealthCheckProfile, root.profile)

    @strawberry.field(description="The profile exactly as PCS sent it; null when absent.")
    def profile_raw(self, root: Parent[pcs.DeepHealthCheckOnStart]) -> str | None:
        return root.profile

    @strawberry.field(description="The repair; null when absent, UNKNOWN for a newer one.")
    def repair_action(self, root: Parent[pcs.DeepHealthCheckOnStart]) -> RepairAction | None:
        return known_or_none(RepairAction, root.repair_action)

    @strawberry.field(description="repairAction exactly as PCS sent it; null when absent.")
    def repair_action_raw(self, root: Parent[pcs.DeepHealthCheckOnStart]) -> str | None:
        return root.repair_action


@strawberry.type(description="Deep health checks of the group's instances.")
class DeepHealthChecks:
    on_start: DeepHealthCheckOnStart | None = strawberry.field(
        description="The check at start; null when PCS does not report one."
    )


@strawberry.type(description="Health checks of the group's instances.")
class InstanceHealthChecks:
    health_monitoring: HealthMonitoring | None = strawberry.field(
        description="Monitoring of running instances; null when PCS does not report it."
    )
    deep_health_checks: DeepHealthChecks | None = strawberry.field(
        description="Deep checks; null when PCS does not report them."
    )


@strawberry.type(
    description="A PCS compute node group: EC2 instances that run a cluster's jobs, scaled by PCS."
)
class ComputeNodeGroup:
    """Resolved from a `gateway.pcs.compute_node_group.ComputeNodeGroup`."""

    name: str = strawberry.field(description="Name of the group, unique in its cluster.")
    id: strawberry.ID = strawberry.field(description="Id PCS generated for the group.")
    arn: str = strawberry.field(
        description="Amazon Resource Name of the group "
        "(arn:aws:pcs:<region>:<account>:cluster/<clusterId>/computenodegroup/<id>)."
    )
    cluster_id: str = strawberry.field(description="Id of the cluster the group belongs to.")
    created_at: datetime = strawberry.field(description="When the group was created (UTC).")
    modified_at: datetime = strawberry.field(
        description="When the group's settings or status last changed (UTC)."
    )
    ami_id: str | None = strawberry.field(
        description="The AMI the instances boot; null when the launch template sets it."
    )
    security_group_ids: list[str] = strawberry.field(
        description="Security groups of the instances; empty when none reported."
    )
    ssh_key_name: str | None = strawberry.field(
        description="EC2 key pair of the instances; null when none."
    )
    subnet_ids: list[str] = strawberry.field(description="Subnets the instances start in.")
    custom_launch_template: CustomLaunchTemplate | None = strawberry.field(
        description="The launch template; null when PCS does not report one."
    )
    iam_instance_profile_arn: str = strawberry.field(
        description="ARN of the IAM instance profile of the instances."
    )
    scaling_configuration: ScalingConfiguration = strawberry.field(
        description="How few and how many instances run."
    )
    instance_configs: list[InstanceConfig] = strawberry.field(
        description="The EC2 instance types of the group; empty when none reported."
    )
    spot_options: SpotOptions | None = strawberry.field(
        description="Spot settings; null when PCS does not report them."
    )
    slurm_configuration: ComputeNodeGroupSlurmConfiguration | None = strawberry.field(
        description="Slurm settings; null when PCS does not report them."
    )
    node_lifecycle_actions: NodeLifecycleActions | None = strawberry.field(
        description="Lifecycle scripts; null when none are configured."
    )
    instance_health_checks: InstanceHealthChecks | None = strawberry.field(
        description="Health checks of the instances; null when none are configured."
    )
    error_info: list[ErrorInfo] = strawberry.field(
        description="Failures PCS reports for the group; empty when none."
    )

    @strawberry.field(description="Lifecycle state; UNKNOWN for a state added after this release.")
    def status(self, root: Parent[pcs.ComputeNodeGroup]) -> ComputeNodeGroupStatus:
        return known(ComputeNodeGroupStatus, root.status)

    @strawberry.field(description="The status exactly as PCS sent it.")
    def status_raw(self, root: Parent[pcs.ComputeNodeGroup]) -> str:
        return root.status

    @strawberry.field(description="How instances are bought; null when absent, UNKNOWN for newer.")
    def purchase_option(self, root: Parent[pcs.ComputeNodeGroup]) -> PurchaseOption | None:
        return known_or_none(PurchaseOption, root.purchase_option)

    @strawberry.field(description="purchaseOption exactly as PCS sent it; null when absent.")
    def purchase_option_raw(self, root: Parent[pcs.ComputeNodeGroup]) -> str | None:
        return root.purchase_option

    @strawberry.field(
        description="Who manages the launch template; null when absent, UNKNOWN for newer."
    )
    def launch_template_mode(self, root: Parent[pcs.ComputeNodeGroup]) -> LaunchTemplateMode | None:
        return known_or_none(LaunchTemplateMode, root.launch_template_mode)

    @strawberry.field(description="launchTemplateMode exactly as PCS sent it; null when absent.")
    def launch_template_mode_raw(self, root: Parent[pcs.ComputeNodeGroup]) -> str | None:
        return root.launch_template_mode

    @strawberry.field(description="The AWS region of the group, e.g. us-east-1.")
    def region(self, root: Parent[pcs.ComputeNodeGroup]) -> str:
        return region_of(root.arn)

    @strawberry.field(description="Tags on the group (ListTagsForResource); empty when none.")
    async def tags(self, root: Parent[pcs.ComputeNodeGroup], info: strawberry.Info) -> list[Tag]:
        return tag_list(await resources(info).tags(region_of(root.arn), root.arn))

    @strawberry.field(description="The cluster of the group; null when PCS no longer has it.")
    async def cluster(
        self, root: Parent[pcs.ComputeNodeGroup], info: strawberry.Info
    ) -> Cluster | None:
        found = await resources(info).cluster(region_of(root.arn), root.cluster_id)
        return found  # type: ignore[return-value]


@strawberry.type(
    description="A compute node group in a page of compute node groups, with its cursor."
)
class ComputeNodeGroupEdge:
    @strawberry.field(description="An opaque cursor: pass it as after to go on after this edge.")
    def cursor(self, root: Parent[EdgeRoot]) -> str:
        return root.cursor

    @strawberry.field(description="The compute node group. " + NODE_DESCRIPTION)
    async def node(self, root: Parent[EdgeRoot], info: strawberry.Info) -> ComputeNodeGroup | None:
        return await graph.edge_node(info, root)  # type: ignore[no-any-return]


@strawberry.type(
    description="A page of a cluster's compute node groups (ListComputeNodeGroups), in PCS's order."
)
class ComputeNodeGroupConnection:
    @strawberry.field(description="The page's compute node groups with cursors.")
    def edges(self, root: Parent[PageRoot], info: strawberry.Info) -> list[ComputeNodeGroupEdge]:
        return graph.edges(info, root)  # type: ignore[return-value]

    @strawberry.field(
        description="The page's compute node groups, without cursors. " + NODE_DESCRIPTION
    )
    def nodes(self, root: Parent[PageRoot], info: strawberry.Info) -> list[ComputeNodeGroup | None]:
        return graph.nodes(info, root)  # type: ignore[return-value]

    @strawberry.field(description="Whether more pages follow, and where.")
    def page_info(self, root: Parent[PageRoot]) -> PageInfo:
        return page_info(root)

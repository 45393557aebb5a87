"""The GraphQL types of a PCS cluster, resolved from the domain objects of `gateway.pcs.cluster`."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, TypeVar

import strawberry
from strawberry import Parent

from gateway.graphql import graph
from gateway.graphql.graph import ListedCluster, region_of
from gateway.graphql.permissions import secret_reference
from gateway.pcs import cluster as pcs
from gateway.service.clusters import ClusterAnswer

E = TypeVar("E", bound=Enum)

#: A cluster with every field, or as a page of ListClusters shows it (summary fields only).
ClusterView = ClusterAnswer | ListedCluster

_FIRST = strawberry.argument(description="How many to return: 1 to 100.")
_AFTER = strawberry.argument(
    description="The endCursor (or an edge's cursor) of the page before; omit for the first."
)

#: The DateTime scalar, described for the people reading the schema.
DateTime = strawberry.scalar(
    name="DateTime",
    description=(
        "A point in time: an ISO 8601 string with a UTC offset, "
        "e.g. 2026-01-15T09:30:00+00:00. PCS reports its times in UTC."
    ),
    serialize=datetime.isoformat,
    parse_value=datetime.fromisoformat,
)

UNKNOWN_DESCRIPTION = (
    "A value PCS added after this gateway was built; the raw value is in the sibling "
    "field ending in Raw."
)


def known(enum: type[E], raw: str) -> E:
    """The enum member for a raw PCS value, or UNKNOWN for a value added after this release."""
    try:
        return enum(raw)
    except ValueError:
        return enum["UNKNOWN"]


def known_or_none(enum: type[E], raw: str | None) -> E | None:
    """`known` for an optional member: None when PCS sent none."""
    return None if raw is None else known(enum, raw)


@strawberry.enum(
    description=(
        "Lifecycle state of a cluster as PCS reports it (provisioning state, not the health "
        "of running jobs)."
    )
)
class ClusterStatus(Enum):
    CREATING = strawberry.enum_value("CREATING", description="PCS is creating the cluster.")
    ACTIVE = strawberry.enum_value("ACTIVE", description="The cluster is ready for work.")
    UPDATING = strawberry.enum_value("UPDATING", description="A change is being applied.")
    DELETING = strawberry.enum_value("DELETING", description="PCS is deleting the cluster.")
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
        "SUSPENDING",
        description="PCS is suspending the cluster because its scheduler version reached end of "
        "life; the controller goes down and compute instances are terminated.",
    )
    SUSPENDED = strawberry.enum_value(
        "SUSPENDED",
        description="The cluster is suspended: its controller is down, no jobs run, and its "
        "resources still count toward quotas.",
    )
    RESUMING = strawberry.enum_value("RESUMING", description="PCS is resuming a suspended cluster.")
    UNKNOWN = strawberry.enum_value("UNKNOWN", description=UNKNOWN_DESCRIPTION)


@strawberry.enum(description="The scheduler that runs the cluster's jobs.")
class SchedulerType(Enum):
    SLURM = strawberry.enum_value("SLURM", description="Slurm Workload Manager.")
    UNKNOWN = strawberry.enum_value("UNKNOWN", description=UNKNOWN_DESCRIPTION)


@strawberry.enum(
    description="Size class of the cluster's controller: how many nodes and jobs it manages."
)
class ClusterSize(Enum):
    SMALL = strawberry.enum_value(
        "SMALL", description="Up to 32 compute nodes and 256 jobs (running and queued)."
    )
    MEDIUM = strawberry.enum_value(
        "MEDIUM", description="Up to 512 compute nodes and 8,192 jobs (running and queued)."
    )
    LARGE = strawberry.enum_value(
        "LARGE", description="Up to 2,048 compute nodes and 16,384 jobs (running and queued)."
    )
    UNKNOWN = strawberry.enum_value("UNKNOWN", description=UNKNOWN_DESCRIPTION)


@strawberry.enum(description="The scheduler daemon an endpoint belongs to.")
class EndpointType(Enum):
    SLURMCTLD = strawberry.enum_value(
        "SLURMCTLD", description="The Slurm controller (slurmctld), usually port 6817."
    )
    SLURMDBD = strawberry.enum_value(
        "SLURMDBD", description="The Slurm accounting database daemon (slurmdbd), usually 6819."
    )
    SLURMRESTD = strawberry.enum_value(
        "SLURMRESTD", description="The Slurm REST API (slurmrestd), usually port 6820."
    )
    UNKNOWN = strawberry.enum_value("UNKNOWN", description=UNKNOWN_DESCRIPTION)


@strawberry.enum(description="IP family of the cluster's network.")
class NetworkType(Enum):
    IPV4 = strawberry.enum_value("IPV4", description="IPv4 only: endpoints have no ipv6Address.")
    IPV6 = strawberry.enum_value(
        "IPV6", description="Dual stack: endpoints have an IPv4 and an IPv6 address."
    )
    UNKNOWN = strawberry.enum_value("UNKNOWN", description=UNKNOWN_DESCRIPTION)


@strawberry.enum(description="Whether Slurm accounting is on.")
class AccountingMode(Enum):
    STANDARD = strawberry.enum_value("STANDARD", description="Accounting is on.")
    NONE = strawberry.enum_value("NONE", description="Accounting is off.")
    UNKNOWN = strawberry.enum_value("UNKNOWN", description=UNKNOWN_DESCRIPTION)


@strawberry.enum(description="Whether the Slurm REST API is on.")
class SlurmRestMode(Enum):
    STANDARD = strawberry.enum_value("STANDARD", description="slurmrestd runs.")
    NONE = strawberry.enum_value("NONE", description="slurmrestd does not run.")
    UNKNOWN = strawberry.enum_value("UNKNOWN", description=UNKNOWN_DESCRIPTION)


@strawberry.enum(description="The language of a job submit plugin.")
class JobSubmitPluginType(Enum):
    STARLARK = strawberry.enum_value("STARLARK", description="A Starlark script.")
    UNKNOWN = strawberry.enum_value("UNKNOWN", description=UNKNOWN_DESCRIPTION)


@strawberry.type(description="The scheduler of a cluster.")
class Scheduler:
    version: str = strawberry.field(
        description="Scheduler version as PCS names it, e.g. 24.11 for Slurm 24.11."
    )

    @strawberry.field(description="The scheduler; UNKNOWN for a kind added after this release.")
    def type(self, root: Parent[pcs.Scheduler]) -> SchedulerType:
        return known(SchedulerType, root.type)

    @strawberry.field(description="The scheduler type exactly as PCS sent it.")
    def type_raw(self, root: Parent[pcs.Scheduler]) -> str:
        return root.type


@strawberry.type(description="One Slurm parameter set by the cluster's owner.")
class SlurmCustomSetting:
    parameter_name: str = strawberry.field(description="Parameter name, e.g. MaxJobCount.")
    parameter_value: str = strawberry.field(
        description="Parameter value, always a string as it appears in the file, e.g. 10000."
    )


@strawberry.type(
    description="The Slurm key that nodes share. A reference to a secret, not the secret itself."
)
class SlurmAuthKey:
    secret_arn: str = strawberry.field(
        description="ARN of the AWS Secrets Manager secret holding the key."
    )
    secret_version: str = strawberry.field(
        description="Version id of that secret the cluster uses (not the secret's value)."
    )


@strawberry.type(description="Signing key of the Slurm REST API's JWTs: a secret reference.")
class JwtKey:
    secret_arn: str = strawberry.field(
        description="ARN of the AWS Secrets Manager secret holding the JWT key."
    )
    secret_version: str = strawberry.field(
        description="Version id of that secret the cluster uses (not the secret's value)."
    )


@strawberry.type(description="JWT authentication of the Slurm REST API.")
class JwtAuth:
    jwt_key: JwtKey | None = strawberry.field(
        description="The signing key's secret; null when PCS does not report one."
    )


@strawberry.type(description="The Slurm REST API (slurmrestd) of a cluster.")
class SlurmRest:
    @strawberry.field(description="Whether slurmrestd runs; UNKNOWN for a newer mode.")
    def mode(self, root: Parent[pcs.SlurmRest]) -> SlurmRestMode:
        return known(SlurmRestMode, root.mode)

    @strawberry.field(description="The mode exactly as PCS sent it.")
    def mode_raw(self, root: Parent[pcs.SlurmRest]) -> str:
        return root.mode


@strawberry.type(description="Slurm accounting of a cluster.")
class Accounting:
    default_purge_time_in_days: int | None = strawberry.field(
        description=(
            "Days after which accounting records are purged; -1 keeps them forever; "
            "null when PCS does not report it."
        )
    )

    @strawberry.field(description="Whether accounting is on; UNKNOWN for a newer mode.")
    def mode(self, root: Parent[pcs.Accounting]) -> AccountingMode:
        return known(AccountingMode, root.mode)

    @strawberry.field(description="The mode exactly as PCS sent it.")
    def mode_raw(self, root: Parent[pcs.Accounting]) -> str:
        return root.mode


@strawberry.type(description="Where a job submit plugin's script is stored.")
class JobSubmitScriptSource:
    script_location: str = strawberry.field(description="S3 URI of the script (s3://bucket/key).")
    s3_version_id: str | None = strawberry.field(
        description="S3 object version of the script; null for the latest."
    )
    checksum: str | None = strawberry.field(
        description="SHA-256 of the script as 64 hex digits; null when not pinned."
    )


@strawberry.type(description="A Slurm job submit plugin that checks or changes submitted jobs.")
class JobSubmitPlugin:
    name: str = strawberry.field(description="Name of the plugin.")
    script_source: JobSubmitScriptSource = strawberry.field(description="The plugin's script.")

    @strawberry.field(description="The script language; UNKNOWN for a newer one.")
    def type(self, root: Parent[pcs.JobSubmitPlugin]) -> JobSubmitPluginType:
        return known(JobSubmitPluginType, root.type)

    @strawberry.field(description="The plugin type exactly as PCS sent it.")
    def type_raw(self, root: Parent[pcs.JobSubmitPlugin]) -> str:
        return root.type


@strawberry.type(description="Slurm settings of a cluster.")
class ClusterSlurmConfiguration:
    scale_down_idle_time_in_seconds: int | None = strawberry.field(
        description=(
            "Seconds a dynamic compute node stays idle before it is terminated; "
            "null when PCS does not report it."
        )
    )
    slurm_custom_settings: list[SlurmCustomSetting] = strawberry.field(
        description="slurm.conf parameters set by the owner; empty when none."
    )
    slurmdbd_custom_settings: list[SlurmCustomSetting] = strawberry.field(
        description="slurmdbd.conf parameters set by the owner; empty when none."
    )
    cgroup_custom_settings: list[SlurmCustomSetting] = strawberry.field(
        description="cgroup.conf parameters set by the owner; empty when none."
    )
    job_submit_plugins: list[JobSubmitPlugin] = strawberry.field(
        description="Job submit plugins; empty when none."
    )
    auth_key: SlurmAuthKey | None = strawberry.field(
        description=(
            "The secret holding the Slurm auth key (a reference, never the key). "
            "Null when PCS does not report one, or for callers not allowed to see it."
        ),
        extensions=secret_reference(),
    )
    jwt_auth: JwtAuth | None = strawberry.field(
        description=(
            "JWT authentication of the Slurm REST API (a secret reference). "
            "Null when not configured, or for callers not allowed to see it."
        ),
        extensions=secret_reference(),
    )
    accounting: Accounting | None = strawberry.field(
        description="Slurm accounting; null when PCS does not report it."
    )
    slurm_rest: SlurmRest | None = strawberry.field(
        description="The Slurm REST API; null when PCS does not report it."
    )


@strawberry.type(description="Network placement of a cluster.")
class Networking:
    subnet_ids: list[str] = strawberry.field(
        description="IDs of the VPC subnets the controller uses; empty when none reported."
    )
    security_group_ids: list[str] = strawberry.field(
        description="IDs of the security groups on the controller; empty when none reported."
    )

    @strawberry.field(
        description="IP family; null when PCS does not report it, UNKNOWN for a newer one."
    )
    def network_type(self, root: Parent[pcs.Networking]) -> NetworkType | None:
        return known_or_none(NetworkType, root.network_type)

    @strawberry.field(description="The network type exactly as PCS sent it; null when absent.")
    def network_type_raw(self, root: Parent[pcs.Networking]) -> str | None:
        return root.network_type


@strawberry.type(description="An address where one of the cluster's scheduler daemons listens.")
class Endpoint:
    private_ip_address: str = strawberry.field(description="Private IPv4 address in the VPC.")
    public_ip_address: str | None = strawberry.field(
        description="Public IPv4 address; null when the endpoint has none."
    )
    ipv6_address: str | None = strawberry.field(
        description="IPv6 address; null on IPv4-only clusters."
    )
    port: str = strawberry.field(description='TCP port, as PCS sends it: a string such as "6817".')

    @strawberry.field(description="Which daemon listens here; UNKNOWN for a newer kind.")
    def type(self, root: Parent[pcs.Endpoint]) -> EndpointType:
        return known(EndpointType, root.type)

    @strawberry.field(description="The endpoint type exactly as PCS sent it.")
    def type_raw(self, root: Parent[pcs.Endpoint]) -> str:
        return root.type


@strawberry.type(description="A failure PCS reports for a cluster, e.g. why creation failed.")
class ErrorInfo:
    code: str | None = strawberry.field(description="PCS's error code; null when absent.")
    message: str | None = strawberry.field(description="PCS's explanation; null when absent.")


@strawberry.type(description="How fresh the gateway's copy of a cluster is.")
class Freshness:
    stale: bool = strawberry.field(
        description=(
            "True when PCS failed and the gateway answered with a copy older than its "
            "freshness limit; see ageSeconds."
        )
    )

    @strawberry.field(description="When the gateway received this value from PCS.")
    def fetched_at(self, root: Parent[ClusterView]) -> datetime:
        return root.fetched_at_datetime

    @strawberry.field(
        description="Seconds (to the millisecond) since the gateway received this value from PCS."
    )
    def age_seconds(self, root: Parent[ClusterView], info: strawberry.Info) -> float:
        age = round(root.age_seconds(), 3)
        # The answer cache restates it when it reuses the answer.
        ages = getattr(info.context, "ages", None)
        if ages is not None:
            ages.append((info.path.key, root.fetched_at, age))
        return age


@strawberry.type(description="A tag on a PCS resource: a key and its value.")
class Tag:
    key: str = strawberry.field(description="The tag's key, e.g. team.")
    value: str = strawberry.field(description="The tag's value; may be empty.")


@strawberry.type(description="An AWS PCS cluster: a Slurm controller and its settings.")
class Cluster:
    """Resolved from a ClusterAnswer: the cluster and how fresh the gateway's copy is."""

    @strawberry.field(description="Name of the cluster, unique in its account and region.")
    def name(self, root: Parent[ClusterView]) -> str:
        return root.cluster.name

    @strawberry.field(description="Id PCS generated for the cluster (pcs_ and 10 characters).")
    def id(self, root: Parent[ClusterView]) -> strawberry.ID:
        return strawberry.ID(root.cluster.id)

    @strawberry.field(
        description="Amazon Resource Name of the cluster "
        "(arn:aws:pcs:<region>:<account>:cluster/<id>)."
    )
    def arn(self, root: Parent[ClusterView]) -> str:
        return root.cluster.arn

    @strawberry.field(
        description="The AWS region of the cluster, e.g. us-east-1: one of `Query.regions`."
    )
    def region(self, root: Parent[ClusterView]) -> str:
        return region_of(root.cluster.arn)

    @strawberry.field(description="Lifecycle state; UNKNOWN for a state added after this release.")
    def status(self, root: Parent[ClusterView]) -> ClusterStatus:
        return known(ClusterStatus, root.cluster.status)

    @strawberry.field(description="The status exactly as PCS sent it.")
    def status_raw(self, root: Parent[ClusterView]) -> str:
        return root.cluster.status

    @strawberry.field(description="When the cluster was created (PCS reports UTC).")
    def created_at(self, root: Parent[ClusterView]) -> datetime:
        return root.cluster.created_at

    @strawberry.field(
        description="When the cluster's settings or status last changed (PCS reports UTC)."
    )
    def modified_at(self, root: Parent[ClusterView]) -> datetime:
        return root.cluster.modified_at

    @strawberry.field(description="The scheduler and its version.")
    def scheduler(self, root: Parent[ClusterAnswer]) -> Scheduler:
        return root.cluster.scheduler  # type: ignore[return-value]

    @strawberry.field(description="Controller size class; UNKNOWN for a newer one.")
    def size(self, root: Parent[ClusterAnswer]) -> ClusterSize:
        return known(ClusterSize, root.cluster.size)

    @strawberry.field(description="The size exactly as PCS sent it.")
    def size_raw(self, root: Parent[ClusterAnswer]) -> str:
        return root.cluster.size

    @strawberry.field(description="Slurm settings; null when PCS does not report them.")
    def slurm_configuration(self, root: Parent[ClusterAnswer]) -> ClusterSlurmConfiguration | None:
        return root.cluster.slurm_configuration  # type: ignore[return-value]

    @strawberry.field(description="Subnets, security groups and IP family.")
    def networking(self, root: Parent[ClusterAnswer]) -> Networking:
        return root.cluster.networking  # type: ignore[return-value]

    @strawberry.field(description="Where the scheduler daemons listen; empty while none is up.")
    def endpoints(self, root: Parent[ClusterAnswer]) -> list[Endpoint]:
        return root.cluster.endpoints  # type: ignore[return-value]

    @strawberry.field(description="Failures PCS reports for the cluster; empty when none.")
    def error_info(self, root: Parent[ClusterAnswer]) -> list[ErrorInfo]:
        return root.cluster.error_info  # type: ignore[return-value]

    @strawberry.field(
        description="How fresh this copy is: when PCS sent it, its age, whether it is stale."
    )
    def freshness(self, root: Parent[ClusterView]) -> Freshness:
        return root  # type: ignore[return-value]

    @strawberry.field(description="Tags on the cluster (ListTagsForResource); empty when none.")
    async def tags(self, root: Parent[ClusterView], info: strawberry.Info) -> list[Tag]:
        arn = root.cluster.arn
        found = await info.context.resources.tags(region_of(arn), arn)
        return [Tag(key=key, value=value) for key, value in found]

    @strawberry.field(
        description="A page of the cluster's queues (ListQueues). Fields beyond the summary "
        "(name, id, arn, status, times) cost one GetQueue per queue, cached."
    )
    async def queues(
        self,
        root: Parent[ClusterView],
        info: strawberry.Info,
        first: Annotated[int, _FIRST] = 100,
        after: Annotated[str | None, _AFTER] = None,
    ) -> Annotated[
        QueueConnection,  # type: ignore[name-defined]  # noqa: F821
        strawberry.lazy("gateway.graphql.queue_types"),
    ]:
        found = await graph.queue_page(info, root.cluster.arn, root.cluster.id, first, after)
        return found

    @strawberry.field(
        description="A page of the cluster's compute node groups (ListComputeNodeGroups). "
        "Fields beyond the summary cost one GetComputeNodeGroup per group, cached."
    )
    async def compute_node_groups(
        self,
        root: Parent[ClusterView],
        info: strawberry.Info,
        first: Annotated[int, _FIRST] = 100,
        after: Annotated[str | None, _AFTER] = None,
    ) -> Annotated[
        ComputeNodeGroupConnection,  # type: ignore[name-defined]  # noqa: F821
        strawberry.lazy("gateway.graphql.node_group_types"),
    ]:
        page = await graph.compute_node_group_page(
            info, root.cluster.arn, root.cluster.id, first, after
        )
        return page

"""A PCS cluster as the gateway's domain object, parsed from GetCluster's `cluster` member.

Enumerated members keep the raw string PCS sent: PCS adds values over time, and the
GraphQL layer decides how to present a value it does not know yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.pcs.wire import (
    ErrorInfo,
    SecretReference,
    SlurmCustomSetting,
    instant,
    parse_error_info,
    parse_secret,
    parse_slurm_custom_settings,
)

SETTLED_STATUSES = frozenset(
    {"ACTIVE", "SUSPENDED", "CREATE_FAILED", "UPDATE_FAILED", "DELETE_FAILED"}
)


@dataclass(frozen=True, slots=True)
class Scheduler:
    """The cluster's scheduler and its version."""

    type: str
    version: str


@dataclass(frozen=True, slots=True)
class JwtAuth:
    """JWT authentication of the Slurm REST API."""

    jwt_key: SecretReference | None


@dataclass(frozen=True, slots=True)
class Accounting:
    """Slurm accounting."""

    mode: str
    default_purge_time_in_days: int | None


@dataclass(frozen=True, slots=True)
class SlurmRest:
    """The Slurm REST API (slurmrestd)."""

    mode: str


@dataclass(frozen=True, slots=True)
class JobSubmitScriptSource:
    """Where a job submit plugin's script lives."""

    script_location: str
    s3_version_id: str | None
    checksum: str | None


@dataclass(frozen=True, slots=True)
class JobSubmitPlugin:
    """A Slurm job submit plugin."""

    name: str
    type: str
    script_source: JobSubmitScriptSource


@dataclass(frozen=True, slots=True)
class SlurmConfiguration:
    """The cluster's Slurm settings."""

    scale_down_idle_time_in_seconds: int | None
    slurm_custom_settings: tuple[SlurmCustomSetting, ...]
    slurmdbd_custom_settings: tuple[SlurmCustomSetting, ...]
    cgroup_custom_settings: tuple[SlurmCustomSetting, ...]
    job_submit_plugins: tuple[JobSubmitPlugin, ...]
    auth_key: SecretReference | None
    jwt_auth: JwtAuth | None
    accounting: Accounting | None
    slurm_rest: SlurmRest | None


@dataclass(frozen=True, slots=True)
class Networking:
    """Subnets, security groups and IP family of the cluster."""

    subnet_ids: tuple[str, ...]
    security_group_ids: tuple[str, ...]
    network_type: str | None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An address where a scheduler daemon of the cluster listens."""

    type: str
    private_ip_address: str
    public_ip_address: str | None
    ipv6_address: str | None
    port: str


@dataclass(frozen=True, slots=True)
class Cluster:
    """A PCS cluster, every member of the service model's `Cluster` shape."""

    name: str
    id: str
    arn: str
    status: str
    created_at: datetime
    modified_at: datetime
    scheduler: Scheduler
    size: str
    slurm_configuration: SlurmConfiguration | None
    networking: Networking
    endpoints: tuple[Endpoint, ...]
    error_info: tuple[ErrorInfo, ...]

    @property
    def settled(self) -> bool:
        """True when the status is not expected to change soon."""
        return self.status in SETTLED_STATUSES


def parse_cluster(wire: Mapping[str, Any]) -> Cluster:
    """Build a Cluster from the `cluster` member of a GetCluster answer.

    Accepts both botocore's parsed form (datetimes) and the JSON form (ISO 8601 strings).
    """
    slurm = wire.get("slurmConfiguration")
    networking = wire.get("networking") or {}
    return Cluster(
        name=wire["name"],
        id=wire["id"],
        arn=wire["arn"],
        status=wire["status"],
        created_at=instant(wire["createdAt"]),
        modified_at=instant(wire["modifiedAt"]),
        scheduler=Scheduler(type=wire["scheduler"]["type"], version=wire["scheduler"]["version"]),
        size=wire["size"],
        slurm_configuration=None if slurm is None else _slurm_configuration(slurm),
        networking=Networking(
            subnet_ids=tuple(networking.get("subnetIds") or ()),
            security_group_ids=tuple(networking.get("securityGroupIds") or ()),
            network_type=networking.get("networkType"),
        ),
        endpoints=tuple(
            Endpoint(
                type=e["type"],
                private_ip_address=e["privateIpAddress"],
                public_ip_address=e.get("publicIpAddress"),
                ipv6_address=e.get("ipv6Address"),
                port=e["port"],
            )
            for e in wire.get("endpoints") or ()
        ),
        error_info=parse_error_info(wire.get("errorInfo")),
    )


def _slurm_configuration(slurm: Mapping[str, Any]) -> SlurmConfiguration:
    jwt = slurm.get("jwtAuth")
    accounting = slurm.get("accounting")
    rest = slurm.get("slurmRest")
    return SlurmConfiguration(
        scale_down_idle_time_in_seconds=slurm.get("scaleDownIdleTimeInSeconds"),
        slurm_custom_settings=parse_slurm_custom_settings(slurm.get("slurmCustomSettings")),
        slurmdbd_custom_settings=parse_slurm_custom_settings(slurm.get("slurmdbdCustomSettings")),
        cgroup_custom_settings=parse_slurm_custom_settings(slurm.get("cgroupCustomSettings")),
        job_submit_plugins=tuple(
            JobSubmitPlugin(
                name=p["name"],
                type=p["type"],
                script_source=JobSubmitScriptSource(
                    script_location=p["scriptSource"]["scriptLocation"],
                    s3_version_id=p["scriptSource"].get("s3VersionId"),
                    checksum=p["scriptSource"].get("checksum"),
                ),
            )
            for p in slurm.get("jobSubmitPlugins") or ()
        ),
        auth_key=parse_secret(slurm.get("authKey")),
        jwt_auth=None if jwt is None else JwtAuth(jwt_key=parse_secret(jwt.get("jwtKey"))),
        accounting=None
        if accounting is None
        else Accounting(
            mode=accounting["mode"],
            default_purge_time_in_days=accounting.get("defaultPurgeTimeInDays"),
        ),
        slurm_rest=None if rest is None else SlurmRest(mode=rest["mode"]),
    )

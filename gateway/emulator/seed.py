"""The emulator's demo clusters, drawn from the shipped model's enums.

One cluster per status, plus clusters with every optional member (`demo-full`), with
only the required ones (`demo-minimal`), and with values PCS may add later. In the demo
regions `demo-full` also has queues and compute node groups (full and minimal ones, joined
through `computeNodeGroupConfigurations`) and tags, and eu-west-1 has clusters of its own,
one of them named as one in us-east-1 (with another id).
"""

from __future__ import annotations

import hashlib
from typing import Any

from gateway.pcs.model import enum_values

ACCOUNT = "123456789012"
REGION = "us-east-1"
# 2026-01-15T09:30:00Z and an hour later, as AWS JSON 1.0 sends timestamps: epoch seconds.
CREATED_AT = 1768469400.0
MODIFIED_AT = 1768473000.5


def cluster_id(name: str, region: str = REGION) -> str:
    """A stable PCS-style id for a cluster name in a region."""
    key = name if region == REGION else f"{region}/{name}"
    return "pcs_" + hashlib.sha256(key.encode()).hexdigest()[:10]


def minimal(name: str, status: str = "ACTIVE", *, region: str = REGION) -> dict[str, Any]:
    """A cluster with only the members the model requires."""
    ident = cluster_id(name, region)
    return {
        "name": name,
        "id": ident,
        "arn": f"arn:aws:pcs:{region}:{ACCOUNT}:cluster/{ident}",
        "status": status,
        "createdAt": CREATED_AT,
        "modifiedAt": MODIFIED_AT,
        "scheduler": {"type": "SLURM", "version": "24.11"},
        "size": "SMALL",
        "networking": {},
    }


def full(name: str, status: str = "ACTIVE", *, region: str = REGION) -> dict[str, Any]:
    """A cluster with every member the model defines, endpoints of every type."""
    cluster = minimal(name, status, region=region)
    secret = f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:pcs!slurm-secret-{cluster['id']}"
    jwt = f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:pcs!jwt-{cluster['id']}"
    ports = {"SLURMCTLD": "6817", "SLURMDBD": "6819", "SLURMRESTD": "6820"}
    cluster.update(
        size="LARGE",
        slurmConfiguration={
            "scaleDownIdleTimeInSeconds": 600,
            "slurmCustomSettings": [
                {"parameterName": "SelectTypeParameters", "parameterValue": "CR_Core_Memory"},
                {"parameterName": "MaxJobCount", "parameterValue": "20000"},
            ],
            "slurmdbdCustomSettings": [
                {"parameterName": "PurgeJobAfter", "parameterValue": "12month"}
            ],
            "cgroupCustomSettings": [
                {"parameterName": "ConstrainRAMSpace", "parameterValue": "yes"}
            ],
            "jobSubmitPlugins": [
                {
                    "name": "limits",
                    "type": enum_values("JobSubmitPluginType")[0],
                    "scriptSource": {
                        "scriptLocation": "s3://demo-bucket/job_submit.star",
                        "s3VersionId": "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY",
                        "checksum": hashlib.sha256(b"job_submit.star").hexdigest(),
                    },
                }
            ],
            "authKey": {"secretArn": secret, "secretVersion": "a1b2c3d4-0001"},
            "jwtAuth": {"jwtKey": {"secretArn": jwt, "secretVersion": "a1b2c3d4-0002"}},
            "accounting": {"mode": "STANDARD", "defaultPurgeTimeInDays": 90},
            "slurmRest": {"mode": "STANDARD"},
        },
        networking={
            "subnetIds": ["subnet-0a1b2c3d4e5f60001"],
            "securityGroupIds": ["sg-0a1b2c3d4e5f60001", "sg-0a1b2c3d4e5f60002"],
            "networkType": "IPV6",
        },
        endpoints=[
            {
                "type": kind,
                "privateIpAddress": f"10.0.1.{10 + n}",
                "publicIpAddress": f"198.51.100.{10 + n}",
                "ipv6Address": f"2001:db8::{10 + n}",
                "port": ports.get(kind, str(6817 + n)),
            }
            for n, kind in enumerate(enum_values("EndpointType"))
        ],
        errorInfo=[],
    )
    return cluster


def _status_cluster(status: str) -> dict[str, Any]:
    name = "demo-" + status.lower().replace("_", "-")
    cluster = minimal(name, status)
    cluster["size"] = enum_values("Size")[len(name) % len(enum_values("Size"))]
    cluster["slurmConfiguration"] = {
        "scaleDownIdleTimeInSeconds": 300,
        "slurmCustomSettings": [],
        "authKey": {
            "secretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:pcs!{name}",
            "secretVersion": "v1",
        },
        "accounting": {"mode": "NONE"},
    }
    cluster["networking"] = {
        "subnetIds": ["subnet-0a1b2c3d4e5f60002"],
        "securityGroupIds": ["sg-0a1b2c3d4e5f60003"],
        "networkType": "IPV4",
    }
    cluster["endpoints"] = [{"type": "SLURMCTLD", "privateIpAddress": "10.0.2.10", "port": "6817"}]
    if status.endswith("_FAILED"):
        cluster["errorInfo"] = [
            {"code": "SlurmctldFailure", "message": "The Slurm controller did not start."}
        ]
    return cluster


def demo_clusters() -> list[dict[str, Any]]:
    """The seeded set: every status, full and minimal clusters, and future values."""
    clusters = [_status_cluster(status) for status in enum_values("ClusterStatus")]
    clusters.append(full("demo-full"))
    clusters.append(minimal("demo-minimal"))
    future_status = minimal("demo-future-status", "HIBERNATING")
    future_endpoint = minimal("demo-future-endpoint")
    future_endpoint["endpoints"] = [
        {"type": "SLURMWEB", "privateIpAddress": "10.0.3.10", "port": "8443"}
    ]
    future_endpoint["size"] = "XLARGE"
    future_endpoint["networking"] = {"networkType": "DUALSTACK"}
    future_endpoint["slurmConfiguration"] = {
        "accounting": {"mode": "ARCHIVE"},
        "slurmRest": {"mode": "ADVANCED"},
    }
    clusters += [future_status, future_endpoint]
    return clusters


#: Seeded clusters that carry values the model does not know yet, on purpose.
FUTURE_VALUE_CLUSTERS = frozenset({"demo-future-status", "demo-future-endpoint"})


def _child(cluster: dict[str, Any], kind: str, name: str, status: str) -> dict[str, Any]:
    """The members a queue and a compute node group share: ids, ARN, times, status."""
    ident = "pcs_" + hashlib.sha256(f"{cluster['arn']}/{kind}/{name}".encode()).hexdigest()[:10]
    return {
        "name": name,
        "id": ident,
        "arn": f"{cluster['arn']}/{kind}/{ident}",
        "clusterId": cluster["id"],
        "createdAt": CREATED_AT + 600,
        "modifiedAt": MODIFIED_AT,
        "status": status,
    }


def minimal_node_group(
    cluster: dict[str, Any], name: str, status: str = "ACTIVE"
) -> dict[str, Any]:
    """A compute node group with only the members the model requires."""
    group = _child(cluster, "computenodegroup", name, status)
    group.update(
        subnetIds=["subnet-0a1b2c3d4e5f60001"],
        iamInstanceProfileArn=f"arn:aws:iam::{ACCOUNT}:instance-profile/AWSPCS-{name}",
        scalingConfiguration={"minInstanceCount": 0, "maxInstanceCount": 4},
        instanceConfigs=[{"instanceType": "c6i.xlarge"}],
    )
    return group


def full_node_group(
    cluster: dict[str, Any], name: str, purchase_option: str, status: str = "ACTIVE"
) -> dict[str, Any]:
    """A compute node group with every member the model defines."""
    group = minimal_node_group(cluster, name, status)
    script = "s3://demo-bucket/lifecycle/"
    group.update(
        amiId="ami-0a1b2c3d4e5f60001",
        securityGroupIds=["sg-0a1b2c3d4e5f60001"],
        sshKeyName="demo-key",
        purchaseOption=purchase_option,
        launchTemplateMode=enum_values("LaunchTemplateMode")[0],
        customLaunchTemplate={"id": "lt-0a1b2c3d4e5f60001", "version": "3"},
        scalingConfiguration={"minInstanceCount": 1, "maxInstanceCount": 64},
        instanceConfigs=[{"instanceType": "hpc7a.96xlarge"}, {"instanceType": "c7i.48xlarge"}],
        spotOptions={"allocationStrategy": "price-capacity-optimized"},
        slurmConfiguration={
            "scaleDownIdleTimeInSeconds": 900,
            "slurmCustomSettings": [{"parameterName": "Weight", "parameterValue": "10"}],
            "gresCustomSettings": [
                {"Name": "gpu", "Type": "h100", "File": "/dev/nvidia[0-7]"},
                {"Name": "shard", "Count": "8"},
            ],
        },
        nodeLifecycleActions={
            "stages": {
                "nodeBootstrapped": [
                    {
                        "name": "mount-scratch",
                        "scriptSource": {
                            "scriptLocation": script + "mount.sh",
                            "s3VersionId": "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHZ",
                            "checksum": hashlib.sha256(b"mount.sh").hexdigest(),
                        },
                        "arguments": ["--fs", "lustre"],
                        "onError": enum_values("OnError")[0],
                        "executionPolicy": enum_values("ExecutionPolicy")[0],
                    }
                ],
                "nodeReady": [
                    {
                        "name": "warm-cache",
                        "scriptSource": {"scriptLocation": script + "warm.sh"},
                        "onError": enum_values("OnError")[-1],
                        "executionPolicy": enum_values("ExecutionPolicy")[-1],
                    }
                ],
            },
            "scriptCachingPolicy": enum_values("ScriptCachingPolicy")[0],
        },
        instanceHealthChecks={
            "healthMonitoring": {"mode": "STANDARD", "repairAction": "REPLACE"},
            "deepHealthChecks": {"onStart": {"profile": "QUICK", "repairAction": "ISOLATE"}},
        },
        errorInfo=[],
    )
    return group


def queue(
    cluster: dict[str, Any],
    name: str,
    groups: list[dict[str, Any]],
    status: str = "ACTIVE",
    *,
    settings: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """A queue that sends jobs to `groups`; with Slurm settings when `settings` is given."""
    found = _child(cluster, "queue", name, status)
    found["computeNodeGroupConfigurations"] = [{"computeNodeGroupId": g["id"]} for g in groups]
    if settings is not None:
        found["slurmConfiguration"] = {"slurmCustomSettings": settings}
        found["errorInfo"] = []
    return found


def _tags(name: str, **more: str) -> dict[str, str]:
    return {"team": "research-computing", "cost-center": "hpc-1234", "Name": name} | more


def with_resources(cluster: dict[str, Any]) -> dict[str, Any]:
    """A cluster with queues and compute node groups of every kind, all tagged."""
    options = enum_values("PurchaseOption")
    names = ("compute-std", "gpu-spot", "train-block", "train-icr")
    groups = [
        full_node_group(cluster, names[n] if n < len(names) else f"nodes-{n}", option)
        for n, option in enumerate(options)
    ]
    failed = minimal_node_group(cluster, "legacy", "UPDATE_FAILED")
    failed["errorInfo"] = [{"code": "InsufficientInstanceCapacity", "message": "No capacity."}]
    groups += [minimal_node_group(cluster, "login"), failed]
    queues = [
        queue(
            cluster,
            "batch",
            groups[:1],
            settings=[{"parameterName": "MaxTime", "parameterValue": "48:00:00"}],
        ),
        queue(cluster, "gpu", groups[1:4], settings=[]),
        queue(cluster, "debug", []),
        queue(cluster, "interactive", [groups[4]], "UPDATING"),
    ]
    queues[-1]["errorInfo"] = [{"code": "SlurmPartitionUpdate", "message": "Reconfiguring."}]
    for item in (*groups, *queues):
        item["tags"] = _tags(item["name"])
    return (
        cluster
        | {"tags": _tags(cluster["name"], environment="demo")}
        | {
            "queues": queues,
            "computeNodeGroups": groups,
        }
    )


def demo_regions() -> dict[str, list[dict[str, Any]]]:
    """The seeded regions: us-east-1 holds `demo_clusters()`; eu-west-1 a few of its own."""
    east = [with_resources(c) if c["name"] == "demo-full" else c for c in demo_clusters()]
    west_full = full("demo-full", region="eu-west-1")
    group = minimal_node_group(west_full, "compute")
    west_full |= {
        "tags": {"environment": "demo", "site": "dublin"},
        "queues": [queue(west_full, "batch", [group])],
        "computeNodeGroups": [group],
    }
    west = [
        west_full,
        minimal("demo-eu-active", region="eu-west-1"),
        minimal("demo-minimal", region="eu-west-1"),
        minimal("demo-eu-creating", "CREATING", region="eu-west-1"),
    ]
    return {REGION: east, "eu-west-1": west}

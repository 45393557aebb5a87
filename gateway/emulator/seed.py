"""The emulator's demo clusters, drawn from the shipped model's enums.

One cluster per status, plus clusters with every optional member (`demo-full`), with
only the required ones (`demo-minimal`), and with values PCS may add later.
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


def cluster_id(name: str) -> str:
    """A stable PCS-style id for a cluster name."""
    return "pcs_" + hashlib.sha256(name.encode()).hexdigest()[:10]


def minimal(name: str, status: str = "ACTIVE", *, region: str = REGION) -> dict[str, Any]:
    """A cluster with only the members the model requires."""
    ident = cluster_id(name)
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


def full(name: str, status: str = "ACTIVE") -> dict[str, Any]:
    """A cluster with every member the model defines, endpoints of every type."""
    cluster = minimal(name, status)
    secret = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:pcs!slurm-secret-{cluster['id']}"
    jwt = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:pcs!jwt-{cluster['id']}"
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

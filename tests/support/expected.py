"""What the gateway must answer for a cluster the emulator sent: the wire JSON, GraphQL-shaped."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.pcs.model import enum_values


def _enum(shape: str, raw: str) -> str:
    return raw if raw in enum_values(shape) else "UNKNOWN"


def _instant(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def _settings(items: list[dict[str, str]] | None) -> list[dict[str, str]]:
    return [
        {"parameterName": s["parameterName"], "parameterValue": s["parameterValue"]}
        for s in items or []
    ]


def _secret(ref: dict[str, str] | None) -> dict[str, str] | None:
    if ref is None:
        return None
    return {"secretArn": ref["secretArn"], "secretVersion": ref["secretVersion"]}


def _slurm(config: dict[str, Any] | None) -> dict[str, Any] | None:
    if config is None:
        return None
    accounting = config.get("accounting")
    rest = config.get("slurmRest")
    jwt = config.get("jwtAuth")
    return {
        "scaleDownIdleTimeInSeconds": config.get("scaleDownIdleTimeInSeconds"),
        "slurmCustomSettings": _settings(config.get("slurmCustomSettings")),
        "slurmdbdCustomSettings": _settings(config.get("slurmdbdCustomSettings")),
        "cgroupCustomSettings": _settings(config.get("cgroupCustomSettings")),
        "jobSubmitPlugins": [
            {
                "name": p["name"],
                "type": _enum("JobSubmitPluginType", p["type"]),
                "typeRaw": p["type"],
                "scriptSource": {
                    "scriptLocation": p["scriptSource"]["scriptLocation"],
                    "s3VersionId": p["scriptSource"].get("s3VersionId"),
                    "checksum": p["scriptSource"].get("checksum"),
                },
            }
            for p in config.get("jobSubmitPlugins") or []
        ],
        "authKey": _secret(config.get("authKey")),
        "jwtAuth": None if jwt is None else {"jwtKey": _secret(jwt.get("jwtKey"))},
        "accounting": None
        if accounting is None
        else {
            "mode": _enum("AccountingMode", accounting["mode"]),
            "modeRaw": accounting["mode"],
            "defaultPurgeTimeInDays": accounting.get("defaultPurgeTimeInDays"),
        },
        "slurmRest": None
        if rest is None
        else {"mode": _enum("SlurmRestMode", rest["mode"]), "modeRaw": rest["mode"]},
    }


def expected_cluster(wire: dict[str, Any]) -> dict[str, Any]:
    """The ClusterFields fragment of schema/examples/cluster-full.graphql, minus freshness."""
    networking = wire["networking"]
    network_type = networking.get("networkType")
    return {
        "name": wire["name"],
        "id": wire["id"],
        "arn": wire["arn"],
        "status": _enum("ClusterStatus", wire["status"]),
        "statusRaw": wire["status"],
        "createdAt": _instant(wire["createdAt"]),
        "modifiedAt": _instant(wire["modifiedAt"]),
        "scheduler": {
            "type": _enum("SchedulerType", wire["scheduler"]["type"]),
            "typeRaw": wire["scheduler"]["type"],
            "version": wire["scheduler"]["version"],
        },
        "size": _enum("Size", wire["size"]),
        "sizeRaw": wire["size"],
        "slurmConfiguration": _slurm(wire.get("slurmConfiguration")),
        "networking": {
            "subnetIds": networking.get("subnetIds", []),
            "securityGroupIds": networking.get("securityGroupIds", []),
            "networkType": None if network_type is None else _enum("NetworkType", network_type),
            "networkTypeRaw": network_type,
        },
        "endpoints": [
            {
                "type": _enum("EndpointType", e["type"]),
                "typeRaw": e["type"],
                "privateIpAddress": e["privateIpAddress"],
                "publicIpAddress": e.get("publicIpAddress"),
                "ipv6Address": e.get("ipv6Address"),
                "port": e["port"],
            }
            for e in wire.get("endpoints") or []
        ],
        "errorInfo": [
            {"code": e.get("code"), "message": e.get("message")}
            for e in wire.get("errorInfo") or []
        ],
    }


def as_received(answer: dict[str, Any]) -> dict[str, Any]:
    """A GraphQL cluster answer with its DateTime strings read as instants, freshness dropped."""
    received = {k: v for k, v in answer.items() if k != "freshness"}
    for key in ("createdAt", "modifiedAt"):
        received[key] = datetime.fromisoformat(received[key])
    return received

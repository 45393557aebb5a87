"""Wire members every PCS resource shares: timestamps, Slurm settings, secret refs, errorInfo.

A leaf: the resource modules (cluster, queue, node group, summary) parse these members here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class SlurmCustomSetting:
    """One Slurm parameter set by the resource's owner."""

    parameter_name: str
    parameter_value: str


@dataclass(frozen=True, slots=True)
class SecretReference:
    """A version of an AWS Secrets Manager secret."""

    secret_arn: str
    secret_version: str


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A failure PCS reports for a resource."""

    code: str | None
    message: str | None


def instant(value: datetime | str | float) -> datetime:
    """An aware datetime from botocore's parsed form, ISO 8601 or epoch seconds."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def parse_slurm_custom_settings(items: Any) -> tuple[SlurmCustomSetting, ...]:
    """Slurm custom settings from their wire list (absent: none)."""
    return tuple(
        SlurmCustomSetting(parameter_name=s["parameterName"], parameter_value=s["parameterValue"])
        for s in items or ()
    )


def parse_secret(ref: Mapping[str, str] | None) -> SecretReference | None:
    """A secret reference from its wire map (absent: None)."""
    if ref is None:
        return None
    return SecretReference(secret_arn=ref["secretArn"], secret_version=ref["secretVersion"])


def parse_error_info(items: Any) -> tuple[ErrorInfo, ...]:
    """A resource's errorInfo from its wire list (absent: none)."""
    return tuple(ErrorInfo(code=e.get("code"), message=e.get("message")) for e in items or ())

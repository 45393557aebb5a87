"""Typed failures of PCS calls: one class per PCS exception, and the failures around them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(eq=False)
class PcsError(Exception):
    """A failed PCS call. `aws_error_code` is PCS's own name for it, when PCS answered."""

    message: str
    aws_error_code: str | None = None
    request_id: str | None = None
    http_status: int | None = None
    resource_id: str | None = None
    resource_type: str | None = None
    retry_after_seconds: int | None = None
    reason: str | None = None
    field_list: list[dict[str, str]] = field(default_factory=list)
    #: What went wrong, for the server log only; never sent to clients.
    detail: str | None = field(default=None, repr=False)

    #: The exception name in PCS's service model this class stands for.
    shape: ClassVar[str | None] = None
    #: Whether a cached value may be served instead (stale-if-error).
    serve_stale: ClassVar[bool] = False
    #: Whether it says PCS itself is failing (counted by the circuit breaker).
    upstream_failure: ClassVar[bool] = False

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def details(self) -> dict[str, Any]:
        """The members PCS sent, for logs and error extensions."""
        found = {
            "awsErrorCode": self.aws_error_code,
            "requestId": self.request_id,
            "resourceId": self.resource_id,
            "resourceType": self.resource_type,
            "retryAfterSeconds": self.retry_after_seconds,
            "reason": self.reason,
            "fieldList": self.field_list or None,
        }
        return {key: value for key, value in found.items() if value is not None}


class ResourceNotFound(PcsError):
    """The cluster does not exist (or not in this account and region)."""

    shape = "ResourceNotFoundException"


class ValidationFailed(PcsError):
    """PCS rejected the request's input."""

    shape = "ValidationException"


class Throttled(PcsError):
    """PCS (or the gateway's own upstream budget) refused the call for its rate."""

    shape = "ThrottlingException"
    serve_stale = True


class Conflict(PcsError):
    """The request conflicts with the resource's current state."""

    shape = "ConflictException"


class AccessDenied(PcsError):
    """The gateway's AWS identity may not call this operation."""

    shape = "AccessDeniedException"


class InternalServerError(PcsError):
    """PCS failed on its side."""

    shape = "InternalServerException"
    serve_stale = True
    upstream_failure = True


class UpstreamUnavailable(PcsError):
    """PCS could not be reached or answered nothing usable: timeout, connection, bad body."""

    serve_stale = True
    upstream_failure = True


class DeadlineExceeded(UpstreamUnavailable):
    """The GraphQL request's deadline passed while a field still waited for PCS."""

    upstream_failure = False


class CircuitOpen(UpstreamUnavailable):
    """The circuit breaker is open: the gateway is not calling PCS for a short while."""

    upstream_failure = False


class GatewayCredentialsError(PcsError):
    """The gateway's own AWS credentials are missing, expired or rejected."""

    serve_stale = True


class UnknownPcsError(PcsError):
    """PCS answered (4xx) with an error code its service model does not define.

    PCS answered, so the breaker counts it as healthy; an unknown 5xx is UpstreamUnavailable.
    """

    serve_stale = True


BY_SHAPE: dict[str, type[PcsError]] = {
    cls.shape: cls
    for cls in (
        ResourceNotFound,
        ValidationFailed,
        Throttled,
        Conflict,
        AccessDenied,
        InternalServerError,
    )
    if cls.shape is not None
}

#: Error codes AWS uses for credentials the service does not accept.
CREDENTIAL_ERROR_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "ExpiredToken",
        "InvalidClientTokenId",
        "MissingAuthenticationTokenException",
        "IncompleteSignature",
        "SignatureDoesNotMatch",
    }
)

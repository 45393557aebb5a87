"""The error contract: every error leaves with `extensions.code` and no internals."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql.error import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types.execution import ExecutionResult

from gateway.pcs import errors
from gateway.service.clusters import InvalidIdentifier
from gateway.service.regions import UnknownRegion

log = logging.getLogger("gateway.graphql")

#: PCS (and local) causes to `extensions.code`; the README's error table is this dict.
CODES: dict[type[Exception], str] = {
    errors.ResourceNotFound: "NOT_FOUND",
    errors.ValidationFailed: "BAD_USER_INPUT",
    InvalidIdentifier: "BAD_USER_INPUT",
    UnknownRegion: "BAD_USER_INPUT",
    errors.Throttled: "THROTTLED",
    errors.Conflict: "CONFLICT",
    errors.AccessDenied: "FORBIDDEN",
    errors.InternalServerError: "UPSTREAM_UNAVAILABLE",
    errors.UpstreamUnavailable: "UPSTREAM_UNAVAILABLE",
    errors.UnknownPcsError: "UPSTREAM_UNAVAILABLE",
    errors.GatewayCredentialsError: "UPSTREAM_CREDENTIALS",
}

INTERNAL = "INTERNAL_SERVER_ERROR"
INTERNAL_MESSAGE = "Unexpected error."
#: Codes of errors that fail the whole request before execution: no `data`.
REQUEST_ERROR_CODES = frozenset({"GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED"})

#: Requests refused before any GraphQL runs (body not JSON, no query...), by HTTP status.
HTTP_REQUEST_ERROR_CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    415: "UNSUPPORTED_MEDIA_TYPE",
    503: "SERVICE_UNAVAILABLE",
}


def error_document(message: str, code: str, **extensions: Any) -> dict[str, Any]:
    """A GraphQL response of one error and no data: a request refused before execution."""
    return {"errors": [{"message": message, "extensions": {"code": code, **extensions}}]}


def request_refusal(status: int, reason: str) -> dict[str, Any]:
    """The error document of a request Strawberry refused with `status`; `reason` is fixed text."""
    return error_document(reason, HTTP_REQUEST_ERROR_CODES.get(status, "BAD_REQUEST"))


class GatewayError(Exception):
    """An error the gateway raises itself, with its own code and a message fit for clients."""

    def __init__(self, message: str, code: str, **extensions: Any) -> None:
        super().__init__(message)
        self.code = code
        self.extensions = extensions


def code_of(exc: BaseException) -> str | None:
    """The `extensions.code` for a known cause, None for an unexpected one."""
    if isinstance(exc, GatewayError):
        return exc.code
    for cls in type(exc).__mro__:
        code = CODES.get(cls)
        if code is not None:
            return code
    return None


def to_contract(error: GraphQLError) -> GraphQLError:
    """The error as clients see it: message, path, locations and extensions only."""
    cause = error.original_error
    if cause is None or _is_request_error(error):
        # Parsing, validation and variable errors: their messages speak of the document
        # and the variables the client sent, nothing of the server.
        code = (error.extensions or {}).get("code") or (
            "GRAPHQL_PARSE_FAILED"
            if error.message.startswith("Syntax Error")
            else "GRAPHQL_VALIDATION_FAILED"
        )
        return _rebuild(error, error.message, {**(error.extensions or {}), "code": code})
    code = code_of(cause)
    if code is None:
        return _rebuild(error, INTERNAL_MESSAGE, {"code": INTERNAL})
    extensions: dict[str, Any] = {"code": code}
    if isinstance(cause, errors.PcsError):
        extensions.update(cause.details())
        message = cause.message
    elif isinstance(cause, GatewayError):
        extensions.update(cause.extensions)
        message = str(cause)
    else:
        message = str(cause)
    return _rebuild(error, message, extensions)


def _is_request_error(error: GraphQLError) -> bool:
    """A failure of the document or its variables (graphql-core's own), not of a field."""
    return error.path is None and isinstance(error.original_error, GraphQLError)


def _rebuild(error: GraphQLError, message: str, extensions: dict[str, Any]) -> GraphQLError:
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions=extensions,
    )


def log_errors(errors_: list[GraphQLError]) -> None:
    """Log each error once: unexpected ones with their stack trace, known ones in one line.

    A failed PCS call is logged with its cause by the PCS client, once however many fields
    waited on it; here each field adds a debug line, and deadlines (which are per request)
    an info line.
    """
    for error in errors_:
        cause = error.original_error
        if cause is None or _is_request_error(error):
            continue
        code = code_of(cause)
        if code is None:
            log.error("unexpected error at %s", error.path, exc_info=cause)
        elif isinstance(cause, errors.DeadlineExceeded):
            log.info("%s at %s: %s", code, error.path, cause.detail)
        else:
            log.debug("%s at %s: %s", code, error.path, type(cause).__name__)


class ErrorContract(SchemaExtension):
    """Rewrites every error of a result into the contract before it leaves the schema."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if isinstance(result, GraphQLExecutionResult | ExecutionResult) and result.errors:
            result.errors = [to_contract(error) for error in result.errors]

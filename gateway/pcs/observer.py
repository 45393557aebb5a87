"""How the PCS client reports its calls: an interface it defines and observability implements.

The client says what each call was (operation, target, the cluster and the resource it
names) and how it ended
(`CallResult`); what becomes of that (metrics, spans, the request log) is the observer's.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Protocol

from gateway.pcs import errors
from gateway.pcs.model import error_codes

SUCCESS = "success"
#: Why no answer came: the call was refused by the breaker, held back by the gateway's own
#: rate limit, had no credentials, got an unreadable answer, or reached nobody.
NO_ANSWER_OUTCOMES = frozenset(
    {"circuit_open", "held_back", "no_credentials", "unreadable", "unreachable"}
)
#: Every outcome the client can name: success, the model's exceptions, the credential
#: codes, and why no answer came. An AWS error code outside it is still reported as sent.
OUTCOMES = frozenset({SUCCESS}) | error_codes() | errors.CREDENTIAL_ERROR_CODES | NO_ANSWER_OUTCOMES


@dataclass(frozen=True, slots=True)
class CallTarget:
    """Where a client's calls go."""

    region: str
    address: str


@dataclass(frozen=True, slots=True)
class CallResult:
    """How one PCS call ended."""

    #: `success`, PCS's error code, or why no answer came (see `outcome_of`).
    outcome: str
    #: The whole call: rate-limit wait and the SDK's retries included.
    seconds: float
    request_id: str | None
    http_status: int | None
    #: The class name of the PcsError a failed call raised.
    error: str | None = None


class CallReport(Protocol):
    """Takes the result of the call being observed."""

    def finished(self, result: CallResult) -> None:
        """The call ended with `result`."""


class UpstreamObserver(Protocol):
    """Observes PCS calls; `call` is entered for the whole of each call."""

    def call(
        self, operation: str, target: CallTarget, identifier: str, resource: str | None = None
    ) -> AbstractContextManager[CallReport]:
        """A call of `operation` is starting, about the cluster `identifier` ("" for none)
        and, below it, `resource` (a queue or node group identifier, or an ARN)."""

    def attempted(self, operation: str, outcome: str) -> None:
        """One HTTP attempt of `operation` ended with `outcome` (retries are attempts too)."""


def outcome_of(exc: errors.PcsError) -> str:
    """The outcome of a failed call: PCS's error code, or why no answer came."""
    if exc.aws_error_code is not None:
        return exc.aws_error_code
    if isinstance(exc, errors.CircuitOpen):
        return "circuit_open"
    if isinstance(exc, errors.Throttled):
        return "held_back"  # the gateway's own rate limit: PCS never saw the call
    if isinstance(exc, errors.GatewayCredentialsError):
        return "no_credentials"
    if exc.request_id is not None or exc.http_status is not None:
        return "unreadable"  # PCS answered, with a body the gateway could not read
    return "unreachable"  # timeout, refused or reset connection


class _Unreported:
    def finished(self, result: CallResult) -> None:
        pass


class NoObserver:
    """Observes nothing: the client's default."""

    _report: AbstractContextManager[CallReport] = nullcontext(_Unreported())

    def call(
        self, operation: str, target: CallTarget, identifier: str, resource: str | None = None
    ) -> AbstractContextManager[CallReport]:
        return self._report

    def attempted(self, operation: str, outcome: str) -> None:
        pass

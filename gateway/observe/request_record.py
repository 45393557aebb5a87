"""The record of the request being served: what each layer below HTTP did for it.

The request log makes it and puts it in the request context (`RequestContext.record`). It
also travels in a context variable, the one kept here, so the cluster service and the PCS
client note into it without knowing of HTTP, and tasks they start (the single-flight call)
note into the request that started them. The request log writes it out when the request ends.
"""

from __future__ import annotations

import re
from contextvars import ContextVar, Token
from dataclasses import dataclass, field

#: A GraphQL Name of at most 100 characters: a client's `operationName` that is not one is
#: never noted, logged or made a metric label.
OPERATION_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,99}")


@dataclass(slots=True)
class RequestRecord:
    """What one request did, noted by the layers it passed through."""

    request_id: str
    operation: str | None = None
    operation_type: str | None = None
    #: success, partial, error or refused; None when no GraphQL operation was asked for.
    outcome: str | None = None
    error_codes: list[str] = field(default_factory=list)
    #: Cluster cache lookups by outcome: hit, negative_hit, miss, coalesced, stale.
    lookups: dict[str, int] = field(default_factory=dict)
    aws_request_ids: list[str] = field(default_factory=list)

    def cache_outcome(self) -> str | None:
        """The lookups' outcomes in one word, or joined with `+` when they differ."""
        if not self.lookups:
            return None
        return "+".join(self.lookups)


_CURRENT: ContextVar[RequestRecord | None] = ContextVar("pcsgw_request", default=None)


def current() -> RequestRecord | None:
    """The record of the request being served, if any."""
    return _CURRENT.get()


def recording(record: RequestRecord) -> Token[RequestRecord | None]:
    """Make `record` the current one; reset the returned token when the request ends."""
    return _CURRENT.set(record)


def note_lookup(outcome: str, aws_request_id: str | None = None) -> None:
    """A cluster cache lookup of the current request, and the PCS call it waited on."""
    record = _CURRENT.get()
    if record is not None:
        record.lookups[outcome] = record.lookups.get(outcome, 0) + 1
        note_upstream(aws_request_id)


def note_upstream(aws_request_id: str | None) -> None:
    """The AWS request id of a PCS call the current request made."""
    record = _CURRENT.get()
    if (
        record is not None
        and aws_request_id is not None
        and aws_request_id not in record.aws_request_ids
    ):
        record.aws_request_ids.append(aws_request_id)

"""The request context: what one layer learns of a request and another layer reads.

Every fact a request carries between layers is a field here, set by the layer that
produces it; the others read it. It lives in `scope["state"]` under one key:

    context = RequestContext.of(scope)   # made on first use
    context.caller = caller              # the authentication layer
    if context.caller is not None and context.caller.may_read_secrets: ...

The service and PCS layers below GraphQL never see it: they report through their observer
interfaces, whose implementations in `gateway.observe` note into the request's record. The
record also travels in a context variable kept here, so tasks a request starts (the
single-flight call) note into the request that started them.
"""

from __future__ import annotations

import math
import re
from collections.abc import MutableMapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

#: The one key of `scope["state"]` the gateway uses.
KEY = "pcsgw"


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
    #: The regions the request's lookups and PCS calls went to, in first-asked order.
    regions: list[str] = field(default_factory=list)

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


def note_region(region: str) -> None:
    """A region the current request looked a resource up in (one of those served)."""
    record = _CURRENT.get()
    if record is not None and region and region not in record.regions:
        record.regions.append(region)


def note_upstream(aws_request_id: str | None) -> None:
    """The AWS request id of a PCS call the current request made."""
    record = _CURRENT.get()
    if (
        record is not None
        and aws_request_id is not None
        and aws_request_id not in record.aws_request_ids
    ):
        record.aws_request_ids.append(aws_request_id)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, as verified; what the answer cache and field authorization read."""

    #: Digest of the principal and of the authorization that changes answers, never a key.
    partition: str
    #: When the caller's token expires (epoch seconds); None for keys and anonymous callers.
    expires_at: float | None
    #: A stable name of the principal for the rate limit and logs; None when anonymous.
    subject: str | None
    may_read_secrets: bool
    scopes: frozenset[str] = field(default_factory=frozenset)


@dataclass(slots=True)
class AnswerFacts:
    """What the GraphQL layer learnt while building one answer, for the answer cache.

    `resources` maps each resource in the answer (a cluster by its ARN, unique across
    regions; a queue, node group, tag set or list page by its cache key) to when PCS sent
    that value; `ages` lists each `ageSeconds` field as (response key, fetched_at, value as
    resolved), so a reused answer states the age at the time it is sent.
    """

    reusable: bool
    fresh_until: float = math.inf
    resources: dict[str, float] = field(default_factory=dict)
    ages: list[tuple[str, float, float]] = field(default_factory=list)


@dataclass(slots=True)
class RequestContext:
    """One request's facts, each set by the layer named beside it."""

    #: The verified caller (authentication); None on public paths.
    caller: Caller | None = None
    #: What the layers below HTTP did (request log, which makes it).
    record: RequestRecord | None = None
    #: The answer's facts (GraphQL view); None when nothing in it may be reused.
    facts: AnswerFacts | None = None
    #: Kept with a stored answer and handed back on its hits (request log: the operation).
    note: str | None = None
    #: Persisted-query documents to register once they validate: (hash, document) (view).
    registrations: tuple[tuple[str, str], ...] = ()

    @staticmethod
    def of(scope: MutableMapping[str, Any]) -> RequestContext:
        """The context of the request `scope` belongs to, made on first use."""
        state: dict[str, Any] = scope.setdefault("state", {})
        context: RequestContext | None = state.get(KEY)
        if context is None:
            context = state[KEY] = RequestContext()
        return context

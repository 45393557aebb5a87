"""The request context: what one layer learns of a request and another layer reads.

Every fact a request carries between layers is a field here, set by the layer that
produces it; the others read it. It lives in `scope["state"]` under one key:

    context = RequestContext.of(scope)   # made on first use
    context.caller = caller              # the authentication layer
    if context.caller is not None and context.caller.may_read_secrets: ...

The service and PCS layers below GraphQL never see it: they note into the request record
through `gateway.observe.request_record`, whose record the request log puts here too.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from gateway.observe.request_record import RequestRecord
from gateway.security.caller import Caller

#: The one key of `scope["state"]` the gateway uses.
KEY = "pcsgw"


@dataclass(slots=True)
class AnswerFacts:
    """What the GraphQL layer learnt while building one answer, for the answer cache.

    `clusters` maps each cluster id in the answer to when PCS sent that value; `ages`
    lists each `ageSeconds` field as (response key, fetched_at, value as resolved), so a
    reused answer states the age at the time it is sent.
    """

    reusable: bool
    fresh_until: float = math.inf
    clusters: dict[str, float] = field(default_factory=dict)
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

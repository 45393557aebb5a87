"""The fast lane's gate: who calls and whether the caller's budget allows, before any cache.

Called by the answer cache (`gateway.http.answer_cache`) for each request to `/graphql`,
in front of Starlette. It authenticates the caller (an API key by its digest, a token
verified once and remembered until it expires) and spends one request of the caller's
rate limit, whether the answer then comes from the cache or not. What it decides is left
in `RequestContext.admission`; a request it does not admit passes on to the layers inside
Starlette, which refuse it with their request id, log line and metrics as before.

    gate = SecurityGate(Authenticator(settings), CallerLimit(settings))
    caller = await gate(scope)   # None: not admitted in front, let the inner layers answer
"""

from __future__ import annotations

from starlette.types import Scope

from gateway.context import Admission, Caller, RequestContext
from gateway.security.authentication import Authenticator, Unauthenticated, is_public
from gateway.security.caller_rate_limit import CallerLimit

#: The admission of a verified caller within its budget: one shared, unchanging value.
ADMITTED = Admission()


class SecurityGate:
    """Authenticates and counts a request to `/graphql`; the caller when it may go on."""

    def __init__(
        self, authenticator: Authenticator, rate_limit: CallerLimit, *, path: str = "/graphql"
    ) -> None:
        self.authenticator = authenticator
        self.rate_limit = rate_limit
        self.path = path

    async def __call__(self, scope: Scope) -> Caller | None:
        if scope["type"] != "http" or scope["path"] != self.path:
            return None
        authenticator = self.authenticator
        if not authenticator.required:
            caller = authenticator.anonymous
        elif is_public(scope):  # GraphiQL's page: nothing executes, the inner layers serve it
            return None
        else:
            try:
                caller = await authenticator.authenticate(scope["headers"])
            except Unauthenticated as exc:
                RequestContext.of(scope).admission = Admission(unauthenticated=str(exc))
                return None
        context = RequestContext.of(scope)
        context.caller = caller
        if not self.rate_limit.enabled:
            context.admission = ADMITTED
            return caller
        retry_after = await self.rate_limit.spend(scope, caller)
        if retry_after is None:
            context.admission = ADMITTED
            return caller
        context.admission = Admission(retry_after=retry_after)
        return None

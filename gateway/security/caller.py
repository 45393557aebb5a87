"""Who is calling, as the authentication layer verified it."""

from __future__ import annotations

from dataclasses import dataclass, field


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

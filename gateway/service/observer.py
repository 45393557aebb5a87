"""How the cluster service reports lookups: an interface it defines, observability implements."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Protocol


class CacheRead(Protocol):
    """Takes what the cache read being observed found."""

    def found(self, outcome: str) -> None:
        """The read ended: `hit`, `miss` or `negative_hit`."""


class LookupObserver(Protocol):
    """Observes cluster lookups: each one's outcome, and the cache read in it."""

    def looked_up(self, outcome: str, aws_request_id: str | None = None) -> None:
        """A lookup ended: hit, negative_hit, miss, coalesced or stale.

        `aws_request_id` names the PCS call it waited on, if any.
        """

    def reading(self, backend: str) -> AbstractContextManager[CacheRead]:
        """A read of the `backend` cache is starting; entered for the whole read."""


class _Unread:
    def found(self, outcome: str) -> None:
        pass


class NoLookupObserver:
    """Observes nothing: the service's default."""

    _read: AbstractContextManager[CacheRead] = nullcontext(_Unread())

    def looked_up(self, outcome: str, aws_request_id: str | None = None) -> None:
        pass

    def reading(self, backend: str) -> AbstractContextManager[CacheRead]:
        return self._read

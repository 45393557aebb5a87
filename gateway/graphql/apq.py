"""Automatic persisted queries: Apollo's APQ protocol, a document sent once, then its hash.

A request whose `extensions.persistedQuery` holds `{"version": 1, "sha256Hash": H}` and
no query is answered from the document registered under H, or refused with
`PERSISTED_QUERY_NOT_FOUND` (HTTP 200, as Apollo clients expect) so the client sends it
again with the document. A document sent with a hash is checked against it and
registered. Documents live in an in-process table bounded in entries and bytes and, when
the cache is Redis, in Redis as well, so a hash registered through one replica is known to
all. A document larger than the cap runs but is not kept. What goes to Redis has a budget
of its own (bytes a day, counted in Redis), so a flood of documents never evicts the
clusters, quotas and stale copies that share it under `allkeys-lru`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from strawberry.http import GraphQLRequestData

from gateway.graphql.errors import error_document
from gateway.lru import LRU
from gateway.service.store import CacheStore

HASH = re.compile(r"[0-9a-f]{64}")
#: Prefix of the shared store's keys; the version part changes with the entry format.
KEY_PREFIX = "pcsgw:v1:apq:"
#: How long the shared store keeps a document: a day, so a flood of one-off documents
#: does not grow the shared Redis for long; clients send a forgotten one again. The
#: byte budget's window is as long, so documents in Redis stay under twice the budget.
SHARED_TTL_SECONDS = 24 * 3600
#: The shared counter of bytes written in the current window.
BUDGET_KEY = "pcsgw:v1:apqbytes"
#: What a document costs in memory beside its characters: the str objects and the table.
ENTRY_OVERHEAD = 300


class PersistedQueryError(Exception):
    """A persisted-query request refused before execution, with its HTTP status and code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def document(self) -> dict[str, Any]:
        """The GraphQL error document for the client."""
        return error_document(self.message, self.code)


class PersistedQueries:
    """Documents by their SHA-256 hash: bounded in entries, shared through the cache store.

    `max_entries=0` turns the protocol off: clients are told so and send documents.
    """

    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int = 8 * 1024 * 1024,
        max_document_bytes: int = 16 * 1024,
        shared: CacheStore | None = None,
        shared_max_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.max_entries = max_entries
        self.max_document_bytes = max_document_bytes
        self.shared = shared if shared_max_bytes > 0 else None
        self.shared_max_bytes = shared_max_bytes
        self._documents: LRU[str, str] = LRU(max_entries, max_bytes=max_bytes, size=_document_size)

    def __len__(self) -> int:
        return len(self._documents)

    @property
    def held_bytes(self) -> int:
        """What the documents held in memory take, about."""
        return self._documents.bytes

    async def apply(self, request: GraphQLRequestData) -> tuple[str, str] | None:
        """Fill in the request's document from its hash; or check the document it sent.

        Returns (hash, document) to `register` once the document has parsed and
        validated, so a hash never names a document the gateway refuses.
        """
        extensions = request.extensions
        if not extensions or extensions.get("persistedQuery") is None:
            return None
        if self.max_entries == 0:
            raise PersistedQueryError(
                200, "PERSISTED_QUERY_NOT_SUPPORTED", "PersistedQueryNotSupported"
            )
        sha256 = _hash_of(extensions["persistedQuery"])
        if request.query is None:
            document = await self._lookup(sha256)
            if document is None:
                raise PersistedQueryError(
                    200, "PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound"
                )
            request.query = document
            return None
        if hashlib.sha256(request.query.encode()).hexdigest() != sha256:
            raise PersistedQueryError(400, "BAD_USER_INPUT", "provided sha does not match query")
        if sha256 in self._documents or len(request.query.encode()) > self.max_document_bytes:
            return None
        return sha256, request.query

    async def register(self, sha256: str, document: str) -> None:
        """Remember a document under its hash, here and in the shared store."""
        self._remember(sha256, document)
        if self.shared is None:
            return
        encoded = document.encode()
        if await self.shared.add_within(
            BUDGET_KEY, len(encoded), self.shared_max_bytes, SHARED_TTL_SECONDS
        ):
            await self.shared.set_many([KEY_PREFIX + sha256], encoded, SHARED_TTL_SECONDS)

    async def _lookup(self, sha256: str) -> str | None:
        document = self._documents.get(sha256)
        if document is not None:
            return document
        if self.shared is None:
            return None
        raw = await self.shared.get(KEY_PREFIX + sha256)
        if raw is None:
            return None
        document = raw.decode()
        # The shared store is trusted no further than a client: the hash must still match.
        if hashlib.sha256(raw).hexdigest() != sha256:
            return None
        self._remember(sha256, document)
        return document

    def _remember(self, sha256: str, document: str) -> None:
        self._documents.put(sha256, document)


def _document_size(document: str) -> int:
    return len(document) + ENTRY_OVERHEAD


def _hash_of(persisted: object) -> str:
    if not isinstance(persisted, dict) or persisted.get("version") != 1:
        raise PersistedQueryError(
            400, "PERSISTED_QUERY_NOT_SUPPORTED", "Only persisted query version 1 is supported."
        )
    sha256 = persisted.get("sha256Hash")
    if not isinstance(sha256, str) or HASH.fullmatch(sha256) is None:
        raise PersistedQueryError(
            400, "BAD_USER_INPUT", "persistedQuery.sha256Hash must be 64 lowercase hex digits."
        )
    return sha256

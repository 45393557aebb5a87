"""Trusted documents: the operations a manifest lists, loaded and validated at start.

Two manifest formats are read: GraphQL Codegen's client preset (its
`persisted-documents.json`, `{"<hash>": "<document>"}`) and Apollo's persisted query
manifest (`{"format": "apollo-persisted-query-manifest", "version": 1, "operations":
[{"id", "name", "type", "body"}]}`). A client names a listed document by its id, as
`documentId` (GraphQL Codegen, Yoga, Hive) or `id` (Relay) beside the operation, or as APQ's
`extensions.persistedQuery.sha256Hash` (Apollo Client). With `only`, every other document
is refused with `PERSISTED_QUERY_NOT_IN_LIST`, as Apollo Router's safelisting does.

    trusted = TrustedDocuments.load(path, schema, only=True)   # ManifestError when bad
    trusted.resolve(request, raw)   # the document the request names by id, filled in
    trusted.admit(request.query)    # PersistedQueryError when only listed ones may run
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from graphql import GraphQLError, GraphQLSchema, parse, validate
from strawberry.http import GraphQLRequestData

from gateway.graphql.apq import PersistedQueryError

APOLLO_FORMAT = "apollo-persisted-query-manifest"
#: Ids as clients send them: a hash, optionally `sha256:`-prefixed, or Hive's `app~v~hash`.
DOCUMENT_ID = re.compile(r"[A-Za-z0-9:_~.\-]{1,256}")
NOT_IN_LIST = "PERSISTED_QUERY_NOT_IN_LIST"


class ManifestError(ValueError):
    """A manifest that cannot be read, has a bad entry, or lists a document that fails."""


class TrustedDocuments:
    """The listed documents by id; whether only they may run."""

    def __init__(self, documents: Mapping[str, str], *, only: bool) -> None:
        self.only = only
        self.by_id: dict[str, str] = {}
        for document_id, document in documents.items():
            self.by_id[document_id] = document
            # Clients of a plain hash manifest may still send the `sha256:` prefix.
            self.by_id.setdefault(f"sha256:{document_id}", document)
        self.documents = frozenset(documents.values())

    def __len__(self) -> int:
        return len(self.documents)

    @classmethod
    def load(cls, path: Path, schema: GraphQLSchema, *, only: bool) -> TrustedDocuments:
        """Read a manifest in either format; every document must parse and validate."""
        try:
            manifest = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ManifestError(f"cannot read the manifest ({type(exc).__name__})") from None
        documents = read_manifest(manifest)
        for document_id, document in documents.items():
            try:
                errors = validate(schema, parse(document))
            except GraphQLError as exc:
                errors = [exc]
            if errors:
                raise ManifestError(f"document {document_id}: {errors[0].message}")
        return cls(documents, only=only)

    def resolve(self, request: GraphQLRequestData, raw: Mapping[str, Any] | None) -> None:
        """Fill in the document a request names by id (`documentId`, `id` or APQ's hash)."""
        document_id = None if raw is None else raw.get("documentId", raw.get("id"))
        if document_id is not None:
            if not isinstance(document_id, str) or DOCUMENT_ID.fullmatch(document_id) is None:
                raise PersistedQueryError(400, "BAD_USER_INPUT", "documentId must be a string id.")
            document = self.by_id.get(document_id)
            if document is None:
                raise PersistedQueryError(400, NOT_IN_LIST, "No trusted document has this id.")
            request.query = document
            return
        extensions = request.extensions
        if request.query is not None or not extensions:
            return
        persisted = extensions.get("persistedQuery")
        sha256 = persisted.get("sha256Hash") if isinstance(persisted, dict) else None
        document = self.by_id.get(sha256) if isinstance(sha256, str) else None
        if document is not None:
            # Answered from the manifest: the APQ protocol has nothing left to do.
            request.query = document
            request.extensions = {k: v for k, v in extensions.items() if k != "persistedQuery"}

    def admit(self, query: str | None) -> None:
        """Refuse a document the manifest does not list, when only listed ones may run."""
        if self.only and query is not None and query not in self.documents:
            raise PersistedQueryError(
                400, NOT_IN_LIST, "Only trusted documents may run here; send a listed id."
            )


def read_manifest(manifest: object) -> dict[str, str]:
    """Documents by id from either manifest format; ManifestError naming a bad entry."""
    if isinstance(manifest, dict) and manifest.get("format") == APOLLO_FORMAT:
        if manifest.get("version") != 1:
            raise ManifestError("only version 1 of Apollo's manifest is read")
        operations = manifest.get("operations")
        if not isinstance(operations, list):
            raise ManifestError("`operations` must be a list")
        pairs = []
        for position, operation in enumerate(operations):
            if not isinstance(operation, dict):
                raise ManifestError(f"operation {position}: not an object")
            pairs.append((operation.get("id"), operation.get("body"), f"operation {position}"))
    elif isinstance(manifest, dict):
        pairs = [(key, value, f"entry {key!r:.80}") for key, value in manifest.items()]
    else:
        raise ManifestError("expected an object: {hash: document} or Apollo's manifest")
    documents: dict[str, str] = {}
    for document_id, document, where in pairs:
        if not isinstance(document_id, str) or DOCUMENT_ID.fullmatch(document_id) is None:
            raise ManifestError(f"{where}: the id must be 1 to 256 characters of [A-Za-z0-9:_~.-]")
        if not isinstance(document, str) or not document.strip():
            raise ManifestError(f"{where}: the document must be a GraphQL string")
        documents[document_id] = document
    if not documents:
        raise ManifestError("the manifest lists no document")
    return documents

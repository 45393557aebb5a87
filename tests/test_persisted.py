"""Automatic persisted queries over real HTTP, and the cache headers of GET answers."""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any

import httpx
import pytest

from tests.support.gateway import Gateway, GatewayFactory
from tests.support.servers import Emulator

STATUS = "query($i: String!) { cluster(identifier: $i) { name status } }"
STATUS_HASH = hashlib.sha256(STATUS.encode()).hexdigest()
EXPECTED = {"data": {"cluster": {"name": "demo-active", "status": "ACTIVE"}}}


# What this module pins is the app's behaviour, not the server's: no socket needed.
pytestmark = pytest.mark.gateway("in_process")


def persisted(sha256: str = STATUS_HASH, version: int = 1) -> dict[str, Any]:
    return {"persistedQuery": {"version": version, "sha256Hash": sha256}}


def post(gateway: Gateway, **payload: Any) -> httpx.Response:
    return gateway.http.post("/graphql", json={"variables": {"i": "demo-active"}, **payload})


def get(gateway: Gateway, headers: dict[str, str] | None = None, **params: Any) -> httpx.Response:
    encoded = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in params.items()}
    encoded.setdefault("variables", json.dumps({"i": "demo-active"}))
    return gateway.http.get("/graphql", params=encoded, headers=headers or {})


def code_of(response: httpx.Response) -> str:
    code: str = response.json()["errors"][0]["extensions"]["code"]
    return code


def max_age(response: httpx.Response) -> int:
    found = re.fullmatch(r"(public|private), max-age=(\d+)", response.headers["cache-control"])
    assert found is not None, response.headers["cache-control"]
    return int(found.group(2))


def test_an_unknown_hash_asks_for_the_document_and_calls_no_one(
    gateway: Gateway, emulator: Emulator
) -> None:
    response = post(gateway, extensions=persisted())
    assert response.status_code == 200
    assert response.json() == {
        "errors": [
            {
                "message": "PersistedQueryNotFound",
                "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
            }
        ]
    }
    assert response.headers["cache-control"] == "no-store"
    assert emulator.calls() == 0


def test_a_registered_document_is_answered_by_its_hash_over_post_and_get(
    gateway: Gateway,
) -> None:
    assert post(gateway, extensions=persisted()).status_code == 200  # not found yet
    registered = post(gateway, query=STATUS, extensions=persisted())
    assert registered.json() == EXPECTED
    assert post(gateway, extensions=persisted()).json() == EXPECTED
    by_get = get(gateway, extensions=persisted())
    assert by_get.json() == EXPECTED
    # Settled clusters are fresh for 30 s by default: a CDN may keep the answer that long.
    assert 0 < max_age(by_get) <= 30
    assert by_get.headers["cache-control"].startswith("public,")
    assert "accept" in by_get.headers["vary"].lower().split(", ")


def test_a_document_that_does_not_match_its_hash_is_refused_and_not_registered(
    gateway: Gateway, emulator: Emulator
) -> None:
    other = hashlib.sha256(b"{ __typename }").hexdigest()
    response = post(gateway, query=STATUS, extensions=persisted(other))
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"] == "provided sha does not match query"
    assert code_of(response) == "BAD_USER_INPUT"
    assert code_of(post(gateway, extensions=persisted(other))) == "PERSISTED_QUERY_NOT_FOUND"
    assert emulator.calls() == 0


def test_malformed_persisted_query_extensions_are_refused_with_a_clear_error(
    gateway: Gateway,
) -> None:
    for extensions, code in (
        (persisted("ABC"), "BAD_USER_INPUT"),
        (persisted(STATUS_HASH.upper()), "BAD_USER_INPUT"),
        ({"persistedQuery": {"version": 1}}, "BAD_USER_INPUT"),
        (persisted(version=2), "PERSISTED_QUERY_NOT_SUPPORTED"),
        ({"persistedQuery": "x" * 10_000}, "PERSISTED_QUERY_NOT_SUPPORTED"),
    ):
        response = post(gateway, extensions=extensions)
        assert response.status_code == 400, extensions
        assert code_of(response) == code
        assert "Traceback" not in response.text
    assert gateway.http.get("/healthz").status_code == 200


def test_persisted_queries_can_be_turned_off(start_gateway: GatewayFactory) -> None:
    gateway = start_gateway(persisted_queries_max_entries=0)
    response = post(gateway, query=STATUS, extensions=persisted())
    assert response.status_code == 200
    assert code_of(response) == "PERSISTED_QUERY_NOT_SUPPORTED"
    # Without the extension, the same document is answered as usual.
    assert post(gateway, query=STATUS).json() == EXPECTED


def test_the_table_of_documents_is_bounded(start_gateway: GatewayFactory) -> None:
    gateway = start_gateway(persisted_queries_max_entries=2)
    documents = [
        f"query Q{n}($i: String!) {{ cluster(identifier: $i) {{ name }} }}" for n in range(3)
    ]
    hashes = [hashlib.sha256(d.encode()).hexdigest() for d in documents]
    for document, sha256 in zip(documents, hashes, strict=True):
        assert "data" in post(gateway, query=document, extensions=persisted(sha256)).json()
    assert len(gateway.app.state.gateway.graphql.apq) == 2
    assert code_of(post(gateway, extensions=persisted(hashes[0]))) == "PERSISTED_QUERY_NOT_FOUND"
    assert "data" in post(gateway, extensions=persisted(hashes[2])).json()


def test_replicas_sharing_redis_share_registered_documents(
    start_gateway: GatewayFactory, redis_url: str
) -> None:
    first = start_gateway(cache_url=redis_url)
    second = start_gateway(cache_url=redis_url)
    assert code_of(post(second, extensions=persisted())) == "PERSISTED_QUERY_NOT_FOUND"
    assert post(first, query=STATUS, extensions=persisted()).json() == EXPECTED
    assert post(second, extensions=persisted()).json() == EXPECTED


@pytest.mark.slow
def test_a_get_answer_from_the_answer_cache_restates_its_max_age(gateway: Gateway) -> None:
    first = get(gateway, query=STATUS)
    time.sleep(1.1)
    second = get(gateway, query=STATUS)
    assert gateway.app.stats.hits == 1
    assert second.content == first.content
    assert max_age(second) < max_age(first)


def test_get_answers_that_must_not_be_kept_say_no_store(gateway: Gateway) -> None:
    missing = get(gateway, query=STATUS, variables=json.dumps({"i": "no-such-cluster"}))
    assert code_of(missing) == "NOT_FOUND"
    assert missing.headers["cache-control"] == "no-store"
    refreshed = get(
        gateway,
        query="query($i: String!) { cluster(identifier: $i, refresh: true) { name } }",
    )
    assert refreshed.json()["data"]["cluster"]["name"] == "demo-active"
    assert refreshed.headers["cache-control"] == "no-store"


def test_a_get_with_credentials_is_private_to_its_caller(gateway: Gateway) -> None:
    response = get(gateway, headers={"authorization": "Bearer abc"}, query=STATUS)
    assert response.headers["cache-control"].startswith("private, max-age=")


def test_a_post_answer_carries_no_cache_header(gateway: Gateway) -> None:
    assert "cache-control" not in post(gateway, query=STATUS).headers


def test_a_document_that_fails_validation_is_not_registered(gateway: Gateway) -> None:
    invalid = "query($i: String!) { cluster(identifier: $i) { noSuchField } }"
    sha256 = hashlib.sha256(invalid.encode()).hexdigest()
    refused = post(gateway, query=invalid, extensions=persisted(sha256))
    assert code_of(refused) == "GRAPHQL_VALIDATION_FAILED"
    assert code_of(post(gateway, extensions=persisted(sha256))) == "PERSISTED_QUERY_NOT_FOUND"
    assert len(gateway.app.state.gateway.graphql.apq) == 0

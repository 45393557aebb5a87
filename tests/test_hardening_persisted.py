"""Automatic persisted queries bounded in bytes, in memory and in a shared Redis."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
import redis

from tests.support.gateway import GatewayFactory
from tests.support.servers import RedisServer

CLUSTERS = ["demo-active", "demo-full", "demo-minimal", "demo-suspended", "demo-creating"]


def large_document(n: int, size: int) -> str:
    """A valid query of about `size` bytes: most of it a comment, which costs no tokens."""
    return f'# {n} {"x" * size}\nquery {{ cluster(identifier: "demo-active") {{ name }} }}'


@pytest.fixture
def small_redis() -> Iterator[RedisServer]:
    """A Redis of its own, as k8s/redis ships it: 10 MB, least recently used keys evicted."""
    server = RedisServer().start()
    client = redis.Redis.from_url(server.url)
    client.config_set("maxmemory", "10mb")
    client.config_set("maxmemory-policy", "allkeys-lru")
    client.close()
    try:
        yield server
    finally:
        server.stop()


def persist(document: str) -> dict[str, object]:
    sha256 = hashlib.sha256(document.encode()).hexdigest()
    return {
        "query": document,
        "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256}},
    }


def test_the_document_table_is_bounded_in_bytes(start_gateway: GatewayFactory) -> None:
    gateway = start_gateway(
        persisted_queries_max_bytes=256 * 1024, persisted_query_max_document_bytes=40_000
    )
    for n in range(40):
        answer = gateway.http.post("/graphql", json=persist(large_document(n, 30_000))).json()
        assert answer == {"data": {"cluster": {"name": "demo-active"}}}
    apq = gateway.app.state.gateway.graphql.apq
    assert 0 < apq.held_bytes <= 256 * 1024
    assert len(apq) < 40
    # A document over the cap still runs, and is not kept.
    over = persist(large_document(99, 50_000))
    assert gateway.http.post("/graphql", json=over).json()["data"] == {
        "cluster": {"name": "demo-active"}
    }
    by_hash = gateway.http.post("/graphql", json={"extensions": over["extensions"]}).json()
    assert by_hash["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


@pytest.mark.slow
@pytest.mark.redis
def test_persisted_documents_never_push_clusters_out_of_a_shared_redis(
    start_gateway: GatewayFactory, small_redis: RedisServer
) -> None:
    gateway = start_gateway(cache_url=small_redis.url, persisted_query_max_document_bytes=60_000)
    for name in CLUSTERS:
        assert gateway.query(f'{{ cluster(identifier: "{name}") {{ name }} }}')["data"]
    client = redis.Redis.from_url(small_redis.url)
    try:

        def cluster_keys() -> list[bytes]:
            return [
                key
                for key in client.keys("pcsgw:v1:*")
                if b":apq" not in key and b":quota" not in key
            ]

        before = len(cluster_keys())
        assert before >= len(CLUSTERS)
        for n in range(250):
            answer = gateway.http.post("/graphql", json=persist(large_document(n, 40_000)))
            assert answer.json() == {"data": {"cluster": {"name": "demo-active"}}}
        assert len(cluster_keys()) == before
        assert client.info("stats")["evicted_keys"] == 0
    finally:
        client.close()

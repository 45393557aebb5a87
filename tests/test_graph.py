"""The resource graph over real HTTP, the real aioboto3 client and the emulator."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import strawberry
from graphql import parse

from gateway.config import Settings
from gateway.graphql.limits import fanout
from gateway.graphql.schema import build_schema
from tests.support.gateway import Gateway, GatewayFactory
from tests.support.graph import DETAIL, EXPECTED_COLD, PAGE, counts, seeded
from tests.support.servers import Emulator


def walk(gateway: Gateway, first: int) -> list[str]:
    names: list[str] = []
    after = None
    for _ in range(200):
        answer = gateway.query(PAGE, {"first": first, "after": after})
        assert "errors" not in answer, answer
        page = answer["data"]["clusterList"]
        assert [e["node"]["name"] for e in page["edges"]] == [n["name"] for n in page["nodes"]]
        assert len(page["edges"]) <= first
        assert page["pageInfo"]["hasPreviousPage"] is False
        names += [n["name"] for n in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            return names
        after = page["pageInfo"]["endCursor"]
    raise AssertionError("the walk did not end")


@pytest.mark.slow
@pytest.mark.parametrize("first", [1, 7, 100])
def test_walking_cluster_list_returns_each_cluster_once(
    gateway: Gateway, emulator: Emulator, first: int
) -> None:
    assert walk(gateway, first) == seeded()
    # Summary fields only: the List calls alone.
    assert set(counts(emulator)) == {"ListClusters"}


def test_an_edge_cursor_goes_on_after_its_edge(gateway: Gateway) -> None:
    first = gateway.query(PAGE, {"first": 5})["data"]["clusterList"]
    middle = first["edges"][1]["cursor"]
    after = gateway.query(PAGE, {"first": 3, "after": middle})["data"]["clusterList"]
    assert [n["name"] for n in after["nodes"]] == seeded()[2:5]


def _tampered(cursor: str) -> list[str]:
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[3] ^= 1
    flipped = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    return [flipped, cursor[: len(cursor) // 2], cursor + "AA", "bm90IGEgY3Vyc29y", ""]


def test_tampered_truncated_and_foreign_cursors_are_refused_with_no_call(
    gateway: Gateway, emulator: Emulator
) -> None:
    cursor = gateway.query(PAGE, {"first": 2})["data"]["clusterList"]["pageInfo"]["endCursor"]
    queues = gateway.query(
        '{ cluster(identifier: "demo-full") { queues(first: 1) { pageInfo { endCursor } } } }'
    )["data"]["cluster"]["queues"]["pageInfo"]["endCursor"]
    before = counts(emulator)
    for bad in [*_tampered(cursor), queues]:
        answer = gateway.query(PAGE, {"first": 2, "after": bad})
        assert answer["data"] is None
        (error,) = answer["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", (bad, error)
    foreign = gateway.query(
        'query($a: String) { cluster(identifier: "demo-full") { '
        "computeNodeGroups(first: 1, after: $a) { nodes { name } } } }",
        {"a": queues},
    )
    assert foreign["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "another list" in foreign["errors"][0]["message"]
    assert counts(emulator) == before


@pytest.mark.parametrize("first", [0, -1, 101, 1000])
def test_a_page_size_outside_1_to_100_is_refused_with_no_call(
    gateway: Gateway, emulator: Emulator, first: int
) -> None:
    answer = gateway.query(PAGE, {"first": first})
    assert answer["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "1 to 100" in answer["errors"][0]["message"]
    assert counts(emulator) == {}


@pytest.mark.parametrize("first", [0, 101, 5000])
def test_a_nested_page_size_outside_1_to_100_costs_no_call_of_the_pages_around_it(
    gateway: Gateway, emulator: Emulator, first: int
) -> None:
    answer = gateway.query(
        "query($n: Int!) { clusterList(first: 2) { nodes { "
        "computeNodeGroups(first: $n) { nodes { name } } } } }",
        {"n": first},
    )
    assert answer["data"] is None
    (error,) = answer["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "limit": 100}
    assert error["message"] == "first must be from 1 to 100."
    assert counts(emulator) == {}


def test_cluster_detail_costs_exactly_its_calls_cold_and_nothing_repeated(
    gateway: Gateway, emulator: Emulator
) -> None:
    answer = gateway.query(DETAIL, {"id": "demo-full"})
    assert "errors" not in answer, answer
    cluster = answer["data"]["cluster"]
    assert [q["name"] for q in cluster["queues"]["nodes"]] == [
        "batch",
        "debug",
        "gpu",
        "interactive",
    ]
    assert len(cluster["computeNodeGroups"]["nodes"]) == 6
    assert {"key": "environment", "value": "demo"} in cluster["tags"]
    assert counts(emulator) == EXPECTED_COLD
    again = gateway.query(DETAIL, {"id": "demo-full"})
    assert again == answer
    assert counts(emulator) == EXPECTED_COLD


@pytest.mark.slow
def test_cluster_detail_under_200_concurrent_requests_costs_the_cold_calls_once(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(fetch_concurrency=64)
    emulator.faults({"global": {"latencySeconds": 0.2}})
    body = {"query": DETAIL, "variables": {"id": "demo-full"}}
    with httpx.Client(base_url=gateway.url, timeout=60) as http:

        def one(_: int) -> Any:
            return http.post("/graphql", json=body).json()

        with ThreadPoolExecutor(max_workers=25) as pool:
            answers = list(pool.map(one, range(200)))
    assert all("errors" not in a for a in answers)
    assert all(a["data"] == answers[0]["data"] for a in answers)
    assert counts(emulator) == EXPECTED_COLD


def test_a_failing_queue_is_null_at_its_path_and_its_siblings_keep_their_data(
    gateway: Gateway, emulator: Emulator
) -> None:
    listed = gateway.query('{ cluster(identifier: "demo-full") { queues { nodes { name id } } } }')
    (gpu,) = [q["id"] for q in listed["data"]["cluster"]["queues"]["nodes"] if q["name"] == "gpu"]
    emulator.faults({"resources": {gpu: {"error": "AccessDeniedException"}}})
    answer = gateway.query(
        '{ cluster(identifier: "demo-full") { queues { nodes { name errorInfo { code } } } } }'
    )
    nodes = answer["data"]["cluster"]["queues"]["nodes"]
    assert [n and n["name"] for n in nodes] == ["batch", "debug", None, "interactive"]
    (error,) = answer["errors"]
    assert error["path"] == ["cluster", "queues", "nodes", 2]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert error["extensions"]["awsErrorCode"] == "AccessDeniedException"
    assert error["extensions"]["requestId"]


def test_queue_and_node_group_by_identifier_with_their_cluster(
    gateway: Gateway, emulator: Emulator
) -> None:
    answer = gateway.query(
        '{ queue(cluster: "demo-full", identifier: "gpu") { name region '
        "cluster { name } computeNodeGroups { name purchaseOption } } "
        'computeNodeGroup(cluster: "demo-full", identifier: "login") { name status } '
        'missing: queue(cluster: "demo-full", identifier: "nope") { name } }'
    )
    assert answer["data"]["queue"]["name"] == "gpu"
    assert answer["data"]["queue"]["region"] == "us-east-1"
    assert answer["data"]["queue"]["cluster"] == {"name": "demo-full"}
    assert len(answer["data"]["queue"]["computeNodeGroups"]) == 3
    assert answer["data"]["computeNodeGroup"] == {"name": "login", "status": "ACTIVE"}
    assert answer["data"]["missing"] is None
    (error,) = answer["errors"]
    assert error["path"] == ["missing"]
    assert error["extensions"]["code"] == "NOT_FOUND"


# --- fan-out -----------------------------------------------------------------------------

FANOUT = """
query Fanout($n: Int!) {
  a: cluster(identifier: "demo-full") { ...Lists }
  b: clusterList(first: $n) { nodes { name } }
}
fragment Lists on Cluster {
  queues(first: 60) { nodes { name } }
  computeNodeGroups { edges { node { name } } }
}
"""


def test_fan_out_over_the_bound_is_refused_before_any_call(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(max_fanout=250)
    # 1 cluster + 60 queues + 100 node groups (the default page) + 90 clusters = 251.
    answer = gateway.query(FANOUT, {"n": 90})
    assert answer["data"] is None
    (error,) = answer["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "limit": 250, "fanout": 251}
    assert error["message"].startswith("The operation could reach 251 resources")
    assert counts(emulator) == {}
    # Pages nest: each node of the outer page may open the inner one.
    nested = gateway.query(
        "{ clusterList(first: 3) { nodes { queues(first: 100) { nodes { name } } } } }"
    )
    assert nested["errors"][0]["extensions"]["fanout"] == 3 + 3 * 100
    # Each alias and each spread of a fragment counts.
    twice = gateway.query(
        'query { a: cluster(identifier: "demo-full") { ...Q } '
        'b: cluster(identifier: "demo-full") { ...Q } } '
        "fragment Q on Cluster { queues(first: 100) { nodes { name } } "
        "computeNodeGroups(first: 30) { nodes { name } } }"
    )
    assert twice["errors"][0]["extensions"]["fanout"] == 2 * (1 + 100 + 30)
    batch = gateway.query(
        "query($ids: [String!]!) { clusters(identifiers: $ids) { queues { nodes { name } } } }",
        {"ids": ["demo-full", "demo-active", "demo-creating"]},
    )
    assert batch["errors"][0]["extensions"]["fanout"] == 3 + 3 * 100
    assert counts(emulator) == {}
    within = gateway.query(FANOUT, {"n": 89})
    assert "errors" not in within, within
    assert len(within["data"]["b"]["nodes"]) == len(seeded()[:89])
    assert counts(emulator)["ListClusters"] == 1


def test_the_default_detail_query_passes_the_fan_out_bound_but_not_the_lookup_limit(
    gateway: Gateway,
) -> None:
    # 1 + 100 + 100 = 201 resources: over the lookup limit's default (100), within max_fanout.
    settings = Settings()
    assert settings.lookup_limit < 201 <= settings.max_fanout
    assert "errors" not in gateway.query(DETAIL, {"id": "demo-full"})


# --- the portal examples -----------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "schema" / "examples"


def test_the_detail_page_example_costs_its_calls_cold_and_nothing_repeated(
    gateway: Gateway, emulator: Emulator
) -> None:
    query = (EXAMPLES / "cluster-detail-page.graphql").read_text()
    answer = gateway.query(query)
    assert "errors" not in answer, answer
    cluster = answer["data"]["cluster"]
    queues, groups = cluster["queues"]["nodes"], cluster["computeNodeGroups"]["nodes"]
    assert (len(queues), len(groups)) == (4, 6)
    # The demo shows every optional member somewhere: the example reads them all.
    assert any(q["tags"] and q["slurmConfiguration"] is not None for q in queues)
    assert any(g["tags"] and g["instanceHealthChecks"] is not None for g in groups)
    assert counts(emulator) == {
        "GetCluster": 1,
        "ListQueues": 1,
        "ListComputeNodeGroups": 1,
        "GetQueue": len(queues),
        "GetComputeNodeGroup": len(groups),
        "ListTagsForResource": 1 + len(queues) + len(groups),
    }
    assert gateway.query(query) == answer
    assert counts(emulator) == EXPECTED_COLD


def test_the_list_page_example_pages_on_list_calls_alone(
    gateway: Gateway, emulator: Emulator
) -> None:
    query = (EXAMPLES / "cluster-list-page.graphql").read_text()
    whole = gateway.query(query)
    page = whole["data"]["clusterList"]
    assert [e["node"]["name"] for e in page["edges"]] == seeded()
    assert page["pageInfo"]["hasNextPage"] is False
    assert counts(emulator) == {"ListClusters": 1}
    assert gateway.query(query) == whole
    assert counts(emulator) == {"ListClusters": 1}
    names: list[str] = []
    after = None
    while True:
        page = gateway.query(query, {"first": 5, "after": after})["data"]["clusterList"]
        names += [e["node"]["name"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert names == seeded()
    assert counts(emulator) == {"ListClusters": 1 + 3}


def test_the_api_page_shows_both_examples_as_they_are() -> None:
    api = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
    for name in ("cluster-list-page", "cluster-detail-page"):
        text = (EXAMPLES / f"{name}.graphql").read_text().rstrip()
        assert f"```graphql\n{text}\n```" in api, name


@pytest.mark.parametrize(
    ("query", "reach"),
    [
        ("{ clusterList { nodes { queues { nodes { name } } } } }", 10 + 10 * 100),
        ("{ clusterList(first: 5) { nodes { queues(first: 20) { nodes { name } } } } }", 105),
        ('{ queue(cluster: "c", identifier: "q") { computeNodeGroups { name } } }', 1 + 100),
        ('{ cluster(identifier: "c") { queues { nodes { cluster { name } } } } }', 1 + 100 + 100),
    ],
)
def test_the_fan_out_the_docs_state(query: str, reach: int) -> None:
    schema = build_schema()
    assert isinstance(schema, strawberry.Schema)
    assert fanout(schema._schema, parse(query), None, None) == reach

"""The resource graph over real HTTP, the real aioboto3 client and the emulator."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from gateway.emulator.seed import demo_regions
from tests.conftest import Gateway, GatewayFactory
from tests.servers import Emulator

DETAIL = """
query ClusterDetail($id: String!) {
  cluster(identifier: $id) {
    name id status
    tags { key value }
    queues {
      nodes {
        name id arn status statusRaw clusterId createdAt modifiedAt
        computeNodeGroupConfigurations { computeNodeGroupId }
        slurmConfiguration { slurmCustomSettings { parameterName parameterValue } }
        errorInfo { code message }
        tags { key value }
      }
    }
    computeNodeGroups {
      nodes {
        name id status amiId subnetIds purchaseOption purchaseOptionRaw
        scalingConfiguration { minInstanceCount maxInstanceCount }
        instanceConfigs { instanceType }
        errorInfo { code message }
        tags { key value }
      }
    }
  }
}
"""

PAGE = """
query Page($first: Int!, $after: String) {
  clusterList(first: $first, after: $after) {
    edges { cursor node { name id status } }
    nodes { name }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""


def counts(emulator: Emulator) -> dict[str, int]:
    found = emulator.http.get("/_emulator/calls").json()
    return {k: v for k, v in found.items() if isinstance(v, int) and v}


def seeded(region: str = "us-east-1") -> list[str]:
    return sorted(c["name"] for c in demo_regions()[region])


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


EXPECTED_COLD = {
    "GetCluster": 1,
    "ListQueues": 1,
    "ListComputeNodeGroups": 1,
    "GetQueue": 4,
    "GetComputeNodeGroup": 6,
    "ListTagsForResource": 11,
}


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

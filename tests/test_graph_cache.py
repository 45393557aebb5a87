"""The resource graph's caching over real HTTP, the real client and the emulator.

Expired page tokens, stale-if-error, the refetch a newer summary asks for, negative
caching of queues and node groups, and the answer cache, APQ and GET for detail queries.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from gateway.emulator.app import create_emulator
from gateway.http.answer_cache import AnswerCache
from tests.support.clock import FakeClock
from tests.support.gateway import Gateway, GatewayFactory
from tests.support.graph import DETAIL, PAGE, counts, seeded
from tests.support.servers import Emulator, ServerThread

MEMBERS = """
{
  queue(cluster: "demo-full", identifier: "gpu") { name status }
  computeNodeGroup(cluster: "demo-full", identifier: "login") { name status }
}
"""
QUEUE_DETAILS = """
{
  cluster(identifier: "demo-full") {
    queues { nodes { name status modifiedAt slurmConfiguration { slurmCustomSettings {
      parameterName parameterValue } } } }
  }
}
"""


@pytest.fixture
def timed() -> Iterator[tuple[Emulator, FakeClock]]:
    """An emulator on a clock the test moves, with page tokens good for an hour."""
    clock = FakeClock(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
    app = create_emulator(clock=clock, token_lifetime_seconds=3600)
    server = ServerThread(app, lifespan="off").start()
    try:
        yield Emulator(server.url), clock
    finally:
        server.stop()


def answers(gateway: Gateway) -> AnswerCache:
    cache: AnswerCache = gateway.app
    return cache


def test_an_expired_page_token_asks_to_start_again_with_one_call(
    start_gateway: GatewayFactory,
    timed: tuple[Emulator, FakeClock],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emulator, clock = timed
    monkeypatch.setenv("AWS_ENDPOINT_URL_PCS", emulator.url)
    gateway = start_gateway()
    first = gateway.query(PAGE, {"first": 2})["data"]["clusterList"]
    assert [n["name"] for n in first["nodes"]] == seeded()[:2]
    clock.advance(3601)
    answer = gateway.query(PAGE, {"first": 2, "after": first["pageInfo"]["endCursor"]})
    assert answer["data"] is None
    (error,) = answer["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["awsErrorCode"] == "ValidationException"
    assert "start again from the first page" in error["message"]
    # One call with the expired token: no retry, no loop.
    assert counts(emulator) == {"ListClusters": 2}
    again = gateway.query(PAGE, {"first": 2})["data"]["clusterList"]
    assert [n["name"] for n in again["nodes"]] == seeded()[:2]


def test_a_fault_past_the_ttl_serves_queues_and_node_groups_stale(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(
        cache_ttl_settled_seconds=0.3,
        cache_ttl_transitional_seconds=0.3,
        list_cache_ttl_seconds=0.3,
        cache_max_stale_seconds=60,
        pcs_max_attempts=1,
    )
    warm = gateway.query(MEMBERS)
    assert "errors" not in warm, warm
    time.sleep(0.4)
    emulator.faults(
        {
            "operations": {
                "GetQueue": {"error": "InternalServerException"},
                "GetComputeNodeGroup": {"error": "InternalServerException"},
            }
        }
    )
    for _ in range(2):
        stale = gateway.query(MEMBERS)
        assert "errors" not in stale, stale
        assert stale["data"] == warm["data"]
        paths = sorted(entry["path"] for entry in stale["extensions"]["stale"])
        assert paths == [["computeNodeGroup"], ["queue"]]
        assert all(entry["ageSeconds"] >= 0.3 for entry in stale["extensions"]["stale"])
    assert counts(emulator) == {"GetQueue": 3, "GetComputeNodeGroup": 3}
    # A stale answer is never stored: each one was built again.
    assert answers(gateway).stats.hits == 0
    assert answers(gateway).stats.stores == 1


def test_a_summary_newer_than_the_cached_details_fetches_them_again(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(list_cache_ttl_seconds=0.3)
    before = gateway.query(QUEUE_DETAILS)["data"]["cluster"]["queues"]["nodes"]
    assert counts(emulator) == {"GetCluster": 1, "ListQueues": 1, "GetQueue": 4}
    changed = emulator.http.post(
        "/_emulator/clusters/demo-full/status", json={"status": "UPDATING", "queue": "gpu"}
    )
    assert changed.status_code == 200
    time.sleep(0.4)  # the page expires; the queues' details (30 s) do not
    after = gateway.query(QUEUE_DETAILS)["data"]["cluster"]["queues"]["nodes"]
    # The new page shows gpu changed after its cached details: only gpu is fetched again.
    assert counts(emulator) == {"GetCluster": 1, "ListQueues": 2, "GetQueue": 5}
    (gpu,) = [q for q in after if q["name"] == "gpu"]
    assert gpu["status"] == "UPDATING"
    assert gpu["modifiedAt"] > next(q for q in before if q["name"] == "gpu")["modifiedAt"]
    assert [q for q in after if q["name"] != "gpu"] == [q for q in before if q["name"] != "gpu"]


def test_a_second_miss_within_the_negative_ttl_costs_no_call(
    gateway: Gateway, emulator: Emulator
) -> None:
    query = (
        '{ q: queue(cluster: "demo-full", identifier: "nope") { name } '
        'g: computeNodeGroup(cluster: "demo-full", identifier: "nope") { name } }'
    )
    for _ in range(3):
        answer = gateway.query(query)
        assert answer["data"] == {"q": None, "g": None}
        found = {e["path"][0]: e["extensions"] for e in answer["errors"]}
        assert found["q"]["code"] == found["g"]["code"] == "NOT_FOUND"
        assert (found["q"]["resourceType"], found["g"]["resourceType"]) == (
            "queue",
            "computeNodeGroup",
        )
    assert counts(emulator) == {"GetQueue": 1, "GetComputeNodeGroup": 1}


# --- the answer cache, APQ and GET ---------------------------------------------------------


def test_a_repeated_detail_query_is_answered_from_the_answer_cache(
    gateway: Gateway, emulator: Emulator
) -> None:
    first = gateway.query(DETAIL, {"id": "demo-full"})
    cold = counts(emulator)
    second = gateway.query(DETAIL, {"id": "demo-full"})
    assert second == first
    assert counts(emulator) == cold
    assert (answers(gateway).stats.hits, answers(gateway).stats.stores) == (1, 1)


def test_a_detail_answer_with_a_failing_node_is_never_stored(
    gateway: Gateway, emulator: Emulator
) -> None:
    listed = gateway.query('{ cluster(identifier: "demo-full") { queues { nodes { id } } } }')
    gpu = listed["data"]["cluster"]["queues"]["nodes"][2]["id"]
    emulator.faults({"resources": {gpu: {"error": "AccessDeniedException"}}})
    # The listing's answer is stored once its response has gone: wait for it, so that
    # what follows counts only the detail answers.
    deadline = time.monotonic() + 10
    while answers(gateway).stats.stores < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    stores = answers(gateway).stats.stores
    assert stores == 1
    for _ in range(2):
        answer = gateway.query(DETAIL, {"id": "demo-full"})
        assert answer["data"]["cluster"]["queues"]["nodes"][2] is None
        assert answer["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert answers(gateway).stats.hits == 0
    assert answers(gateway).stats.stores == stores


def _get(gateway: Gateway, **params: Any) -> httpx.Response:
    encoded = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in params.items()}
    return gateway.http.get("/graphql", params=encoded)


def test_a_detail_query_works_persisted_and_over_get_with_its_max_age(
    gateway: Gateway, emulator: Emulator
) -> None:
    digest = hashlib.sha256(DETAIL.encode()).hexdigest()
    persisted = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    variables = {"id": "demo-full"}
    registered = gateway.http.post(
        "/graphql", json={"query": DETAIL, "variables": variables, "extensions": persisted}
    )
    assert "errors" not in registered.json()
    cold = counts(emulator)
    by_hash = _get(gateway, variables=variables, extensions=persisted)
    assert by_hash.status_code == 200
    assert by_hash.json() == registered.json()
    control = by_hash.headers["cache-control"]
    assert control.startswith("public, max-age=")
    # The answer is as fresh as its freshest-expiring part: list pages, 5 s by default.
    assert 0 <= int(control.removeprefix("public, max-age=")) <= 5
    again = _get(gateway, variables=variables, extensions=persisted)
    assert again.content == by_hash.content
    assert answers(gateway).stats.hits == 1
    assert counts(emulator) == cold

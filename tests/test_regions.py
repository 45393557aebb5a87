"""Every region from one gateway: a region argument, regions kept apart, failures kept apart."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis

from gateway.app import create_app, region_names
from gateway.config import MAX_REGIONS, Settings, SettingsError, load_settings
from gateway.demo import DEMO_REGIONS
from gateway.emulator.faults import FaultPlan, FaultPlanError
from gateway.pcs.client import PcsClient
from tests.support.gateway import Gateway, GatewayFactory, assert_no_leaks
from tests.support.metrics import family_samples, scrape
from tests.support.request_lines import request_lines
from tests.support.servers import Emulator, ServerThread

EAST, WEST = "us-east-1", "eu-west-1"
BOTH = f"{EAST},{WEST}"
CLUSTER = """
query($i: String!, $r: String) {
  cluster(identifier: $i, region: $r) { name id arn region }
}
"""
BOTH_REGIONS = """
query($i: String!) {
  east: cluster(identifier: $i, region: "us-east-1") { name id arn region }
  west: cluster(identifier: $i, region: "eu-west-1") { name id arn region }
}
"""


def calls_by_region(emulator: Emulator, operation: str = "GetCluster") -> dict[str, int]:
    """Accepted calls of `operation` by the region of their signature."""
    by_region: dict[str, dict[str, int]] = emulator.http.get("/_emulator/calls").json()["byRegion"]
    return {region: ops[operation] for region, ops in by_region.items() if operation in ops}


# Settings


def test_regions_are_listed_comma_separated_the_first_the_default() -> None:
    settings = load_settings(regions=" us-east-1, eu-west-1 ,us-gov-west-1")
    assert settings.regions == [EAST, WEST, "us-gov-west-1"]
    assert region_names(settings, {}) == (EAST, WEST, "us-gov-west-1")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("us-east-1,us-east-1", "a region is listed twice"),
        ("us-east-1,US-WEST-2", "each region is a region name such as eu-west-1"),
        ("eu-west", "each region is a region name such as eu-west-1"),
        ("us-east-1;rm -rf", "each region is a region name such as eu-west-1"),
        (",".join(f"us-east-{n}" for n in range(MAX_REGIONS + 1)), f"at most {MAX_REGIONS}"),
    ],
)
def test_a_bad_region_list_stops_start_up_naming_the_variable(value: str, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(regions=value)
    text = str(raised.value)
    assert text.startswith("PCS_GATEWAY_REGIONS: ")
    assert message in text


def test_without_a_list_the_sdk_region_or_the_demo_regions_are_served() -> None:
    assert region_names(Settings(), {"AWS_REGION": WEST, "AWS_DEFAULT_REGION": EAST}) == (WEST,)
    assert region_names(Settings(), {"AWS_DEFAULT_REGION": EAST}) == (EAST,)
    assert region_names(Settings(), {}) == (None,)  # the SDK's own (the profile's)
    assert region_names(Settings(demo=True), {}) == DEMO_REGIONS == (EAST, WEST)
    assert region_names(Settings(demo=True, regions=WEST), {}) == (WEST,)


# Endpoints


async def test_each_region_gets_the_endpoint_the_sdk_resolves_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_PCS", raising=False)
    endpoints = {}
    for region in (EAST, WEST):
        async with PcsClient.open(Settings(), region_name=region) as client:
            assert client.region == region
            endpoints[region] = client.endpoint
    assert endpoints == {
        EAST: f"https://pcs.{EAST}.amazonaws.com|{EAST}",
        WEST: f"https://pcs.{WEST}.amazonaws.com|{WEST}",
    }


async def test_aws_endpoint_url_points_every_region_at_one_endpoint(
    monkeypatch: pytest.MonkeyPatch, emulator: Emulator
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_PCS", emulator.url)
    emulator.reset()
    found = {}
    for region in (EAST, WEST):
        async with PcsClient.open(Settings(), region_name=region) as client:
            assert client.endpoint == f"{emulator.url}|{region}"
            found[region] = (await client.get_cluster("demo-full")).cluster.arn
    # One endpoint, two regions: the emulator tells them apart by the signature's scope.
    assert found[EAST].startswith(f"arn:aws:pcs:{EAST}:")
    assert found[WEST].startswith(f"arn:aws:pcs:{WEST}:")
    assert calls_by_region(emulator) == {EAST: 1, WEST: 1}


# Schema and arguments


def test_the_same_name_in_two_regions_is_two_clusters(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(regions=BOTH)
    answer = gateway.query(BOTH_REGIONS, {"i": "demo-full"})
    assert "errors" not in answer
    east, west = answer["data"]["east"], answer["data"]["west"]
    assert east["name"] == west["name"] == "demo-full"
    assert (east["region"], west["region"]) == (EAST, WEST)
    assert east["id"] != west["id"]
    for cluster, region in ((east, EAST), (west, WEST)):
        assert cluster["arn"].startswith(f"arn:aws:pcs:{region}:")
        assert cluster["arn"].endswith(f":cluster/{cluster['id']}")
    assert calls_by_region(emulator) == {EAST: 1, WEST: 1}


def test_no_region_asks_the_default_and_regions_lists_the_default_first(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(regions=f"{WEST},{EAST}")
    answer = gateway.query('{ regions cluster(identifier: "demo-minimal") { region } }')
    assert answer == {"data": {"regions": [WEST, EAST], "cluster": {"region": WEST}}}
    answer = gateway.query(
        '{ clusters(identifiers: ["demo-eu-active", "demo-active"]) { name region } }'
    )
    # demo-active lives in us-east-1 only: not found in the default region.
    assert answer["data"]["clusters"] == [{"name": "demo-eu-active", "region": WEST}, None]
    assert answer["errors"][0]["path"] == ["clusters", 1]
    assert answer["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert calls_by_region(emulator) == {WEST: 3}


@pytest.mark.parametrize("region", ["ap-south-1", "US-EAST-1", "", "x" * 500, "eu-west-1 "])
def test_an_unlisted_region_is_refused_before_any_pcs_call(
    start_gateway: GatewayFactory, emulator: Emulator, region: str
) -> None:
    gateway = start_gateway(regions=BOTH)
    one = gateway.query(CLUSTER, {"i": "demo-full", "r": region})
    assert one["data"] == {"cluster": None}
    assert one["errors"][0]["path"] == ["cluster"]
    many = gateway.query(
        """query($r: String) { clusters(identifiers: ["demo-full", "x"], region: $r) { name } }""",
        {"r": region},
    )
    # `clusters` is a non-null list: its refusal, like the batch limit's, nulls the data.
    assert many["data"] is None
    assert many["errors"][0]["path"] == ["clusters"]
    for error in (*one["errors"], *many["errors"]):
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "us-east-1, eu-west-1" in error["message"]
        assert len(error["message"]) < 200
    assert emulator.http.get("/_emulator/calls").json()["byRegion"] == {}
    assert emulator.calls() == 0


# Regions kept apart


def test_no_cluster_cache_entry_crosses_regions(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(regions=BOTH, answer_cache_max_entries=0)
    for _ in range(3):
        east = gateway.query(CLUSTER, {"i": "demo-full", "r": EAST})["data"]["cluster"]
        assert east["region"] == EAST
    assert calls_by_region(emulator) == {EAST: 1}
    # A name cached in one region is asked of the other region's PCS, and answered from it.
    west = gateway.query(CLUSTER, {"i": "demo-full", "r": WEST})["data"]["cluster"]
    assert west["region"] == WEST and west["id"] != east["id"]
    # Looked up by the other region's id, a cluster is not found where it does not live.
    answer = gateway.query(CLUSTER, {"i": west["id"], "r": EAST})
    assert answer["data"]["cluster"] is None
    assert answer["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert calls_by_region(emulator) == {EAST: 2, WEST: 1}


@pytest.mark.redis
def test_redis_keys_of_two_regions_never_meet(
    start_gateway: GatewayFactory, emulator: Emulator, redis_url: str
) -> None:
    gateway = start_gateway(regions=BOTH, cache_url=redis_url, answer_cache_max_entries=0)
    answer = gateway.query(BOTH_REGIONS, {"i": "demo-full"})["data"]
    client = redis.Redis.from_url(redis_url)
    try:
        found = [key.decode().split(":", 3) for key in client.keys("pcsgw:v1:*")]
    finally:
        client.close()
    # pcsgw:v1:<account>:<endpoint>|<region>:<identifier>, one account for both regions.
    found = [parts for parts in found if parts[3].startswith(emulator.url)]
    assert len({parts[2] for parts in found}) == 1
    keys = sorted(parts[3] for parts in found)
    prefix = f"{emulator.url}|"
    assert keys == sorted(
        f"{prefix}{region}:{identifier}"
        for region, cluster in ((EAST, answer["east"]), (WEST, answer["west"]))
        for identifier in {"demo-full", cluster["id"]}
    )
    # A second gateway sharing the Redis answers both regions from it.
    again = start_gateway(regions=BOTH, cache_url=redis_url, answer_cache_max_entries=0)
    assert again.query(BOTH_REGIONS, {"i": "demo-full"})["data"] == answer
    assert calls_by_region(emulator) == {EAST: 1, WEST: 1}


@pytest.mark.slow
def test_single_flight_is_per_region(start_gateway: GatewayFactory, emulator: Emulator) -> None:
    gateway = start_gateway(regions=BOTH, answer_cache_max_entries=0)
    # Slow answers, so that the requests of each region overlap in one PCS call.
    emulator.faults({"clusters": {"demo-full": {"latencySeconds": 1.0}}})

    def ask(region: str) -> Any:
        answer = httpx.post(
            f"{gateway.url}/graphql",
            json={"query": CLUSTER, "variables": {"i": "demo-full", "r": region}},
            timeout=30,
        ).json()
        assert_no_leaks(answer)
        return answer["data"]["cluster"]

    regions = [EAST, WEST] * 6
    with ThreadPoolExecutor(len(regions)) as pool:
        answers = list(pool.map(ask, regions))
    assert [a["region"] for a in answers] == regions
    assert len({a["arn"] for a in answers if a["region"] == EAST}) == 1
    assert len({a["arn"] for a in answers if a["region"] == WEST}) == 1
    assert calls_by_region(emulator) == {EAST: 1, WEST: 1}
    stats = {r.name: r.clusters.stats for r in gateway.app.state.gateway.regions}
    assert stats[EAST].misses == stats[WEST].misses == 1
    assert stats[EAST].coalesced_waits + stats[EAST].hits == 5
    assert stats[WEST].coalesced_waits + stats[WEST].hits == 5


def test_no_answer_cache_entry_crosses_regions(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(regions=BOTH)
    for region in (EAST, WEST, EAST, WEST):
        answer = gateway.query(CLUSTER, {"i": "demo-full", "r": region})
        assert answer["data"]["cluster"]["region"] == region
    answers = gateway.app.stats
    assert (answers.stores, answers.hits) == (2, 2)
    assert calls_by_region(emulator) == {EAST: 1, WEST: 1}


# Failures kept apart


def test_one_regions_outage_opens_only_its_breaker_and_the_others_answer(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(
        regions=BOTH, breaker_failure_threshold=2, pcs_max_attempts=1, answer_cache_max_entries=0
    )
    emulator.faults({"regions": {WEST: {"global": {"error": "InternalServerException"}}}})
    for identifier in ("demo-full", "demo-minimal", "demo-eu-active"):
        answer = gateway.query(CLUSTER, {"i": identifier, "r": WEST})
        assert answer["data"] == {"cluster": None}
        assert answer["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
    # Two failures opened the west breaker: the third was never sent.
    assert calls_by_region(emulator) == {WEST: 2}
    for identifier in ("demo-full", "demo-minimal", "demo-active"):
        answer = gateway.query(CLUSTER, {"i": identifier, "r": EAST})
        assert answer["data"]["cluster"]["region"] == EAST
    assert calls_by_region(emulator) == {EAST: 3, WEST: 2}
    checks = gateway.http.get("/readyz").json()["checks"]
    assert checks["pcsBreaker"] == "closed"  # the default region's
    assert checks["pcsBreakers"] == {EAST: "closed", WEST: "open"}
    samples = scrape(gateway)
    breaker = family_samples(samples, "pcsgw_upstream_breaker_state")
    assert breaker[(("region", EAST), ("state", "closed"))] == 1
    assert breaker[(("region", WEST), ("state", "open"))] == 1
    assert family_samples(samples, "pcsgw_upstream_breaker_opened_total") == {
        (("region", EAST),): 0,
        (("region", WEST),): 1,
    }


def test_a_two_region_operation_returns_what_it_can(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(regions=BOTH, pcs_max_attempts=1)
    emulator.faults({"regions": {WEST: {"global": {"error": "InternalServerException"}}}})
    answer = gateway.query(BOTH_REGIONS, {"i": "demo-full"})
    assert answer["data"]["east"]["region"] == EAST
    assert answer["data"]["west"] is None
    [error] = answer["errors"]
    assert error["path"] == ["west"]
    assert error["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
    assert error["extensions"]["awsErrorCode"] == "InternalServerException"
    batch = gateway.query(
        """{ east: clusters(identifiers: ["demo-full", "demo-minimal"]) { region }
             west: clusters(identifiers: ["demo-full"], region: "eu-west-1") { region } }"""
    )
    assert batch["data"] == {"east": [{"region": EAST}, {"region": EAST}], "west": [None]}
    assert [e["path"] for e in batch["errors"]] == [["west", 0]]


def test_a_region_scoped_fault_plan_is_checked() -> None:
    plan = FaultPlan.parse({"regions": {WEST: {"clusters": {"demo-full": {"error": "X"}}}}})
    assert [p is plan for p in plan.for_call(EAST)] == [True]
    west = plan.for_call(WEST)
    assert len(west) == 2 and west[1] is plan
    assert west[0].fault_for("demo-full") is not None
    for bad in (
        {"regions": {"moon-1": {}}},
        {"regions": ["eu-west-1"]},
        {"regions": {WEST: {"regions": {}}}},
        {"regions": {WEST: {"global": {"nope": 1}}}},
    ):
        with pytest.raises(FaultPlanError):
            FaultPlan.parse(bad)


# What operators see


def test_metrics_and_request_lines_carry_the_regions(
    start_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.requests")
    gateway = start_gateway(regions=BOTH)
    response = gateway.http.post(
        "/graphql",
        json={"query": BOTH_REGIONS, "variables": {"i": "demo-full"}},
        headers={"x-request-id": "two-regions"},
    )
    assert response.status_code == 200
    [line] = request_lines(caplog, "two-regions")
    assert sorted(line["regions"]) == sorted([EAST, WEST])
    samples = scrape(gateway)
    assert family_samples(samples, "pcsgw_upstream_calls_total") == {
        (("operation", "GetCluster"), ("outcome", "success"), ("region", EAST)): 1,
        (("operation", "GetCluster"), ("outcome", "success"), ("region", WEST)): 1,
    }
    memory = ("backend", "memory")
    assert family_samples(samples, "pcsgw_cache_misses_total") == {
        (memory, ("region", EAST)): 1,
        (memory, ("region", WEST)): 1,
    }
    # A region nobody serves never becomes a label.
    gateway.query(CLUSTER, {"i": "demo-full", "r": "ap-south-1"})
    assert "ap-south-1" not in gateway.http.get("/metrics").text


# The demo


def test_the_demo_serves_both_demo_regions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_PCS", raising=False)
    server = ServerThread(create_app(Settings(demo=True))).start()
    try:
        gateway = Gateway(server, None)
        answer = gateway.query(
            """{ regions
                 east: cluster(identifier: "demo-active") { region }
                 west: cluster(identifier: "demo-eu-active", region: "eu-west-1") { region } }"""
        )
    finally:
        server.stop()
    assert answer == {
        "data": {"regions": [EAST, WEST], "east": {"region": EAST}, "west": {"region": WEST}}
    }

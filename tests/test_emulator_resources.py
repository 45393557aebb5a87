"""The emulator's queues, compute node groups, tags, pages, regions and statuses over time."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import strawberry
from botocore.config import Config
from botocore.exceptions import ClientError

from gateway.emulator.seed import demo_regions
from gateway.graphql.queue_types import Queue
from gateway.pcs import model
from gateway.pcs.client import make_session
from gateway.pcs.cluster import parse_cluster
from gateway.pcs.compute_node_group import ComputeNodeGroup as PcsComputeNodeGroup
from gateway.pcs.compute_node_group import parse_compute_node_group
from gateway.pcs.queue import parse_queue
from gateway.pcs.summary import Tags, parse_page, parse_queue_summary, parse_tags
from gateway.service.clusters import ClusterAnswer
from tests.support.emulator_data import FULL, pages
from tests.support.servers import Emulator, ServerThread

WEST = "eu-west-1"


def signed(operation: str, region: str = "us-east-1") -> dict[str, str]:
    """Headers of a signed call, for requests sent without an SDK."""
    return {
        "authorization": f"AWS4-HMAC-SHA256 Credential=AKIDTEST/20260101/{region}/pcs/"
        "aws4_request, SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
        "x-amz-date": "20260101T000000Z",
        "content-type": "application/x-amz-json-1.0",
        "x-amz-target": f"AWSParallelComputingService.{operation}",
    }


def call(url: str, operation: str, body: dict[str, Any], region: str = "us-east-1") -> Any:
    response = httpx.post(url, headers=signed(operation, region), content=json.dumps(body))
    return response.status_code, response.json()


@pytest.fixture
def fresh(emulator: Emulator) -> Emulator:
    emulator.reset()
    return emulator


async def _client(url: str, region: str) -> AsyncIterator[Any]:
    async with make_session().client(
        "pcs",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="secret",
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    ) as client:
        yield client


@pytest.fixture
async def pcs(fresh: Emulator) -> AsyncIterator[Any]:
    async for client in _client(fresh.url, "us-east-1"):
        yield client


@pytest.fixture
async def west(fresh: Emulator) -> AsyncIterator[Any]:
    async for client in _client(fresh.url, WEST):
        yield client


def test_the_demo_resources_cover_every_member_and_purchase_option() -> None:
    queues, groups = FULL["queues"], FULL["computeNodeGroups"]
    for shape, items in (("Queue", queues), ("ComputeNodeGroup", groups)):
        members = set(model.shapes()[shape]["members"])
        required = set(model.shapes()[shape]["required"])
        wire = [{k: v for k, v in item.items() if k != "tags"} for item in items]
        assert any(members == set(item) for item in wire), f"a {shape} with every member"
        assert any(required == set(item) for item in wire), f"a {shape} with only the required"
    assert {g.get("purchaseOption") for g in groups} >= set(model.enum_values("PurchaseOption"))
    known = {g["id"] for g in groups}
    joined = {c["computeNodeGroupId"] for q in queues for c in q["computeNodeGroupConfigurations"]}
    assert joined and joined <= known
    assert any(len(g["slurmConfiguration"]["gresCustomSettings"]) > 1 for g in groups[:1])


async def test_a_name_in_two_regions_is_two_clusters(pcs: Any, west: Any, fresh: Emulator) -> None:
    east_full = (await pcs.get_cluster(clusterIdentifier="demo-full"))["cluster"]
    west_full = (await west.get_cluster(clusterIdentifier="demo-full"))["cluster"]
    assert east_full["id"] != west_full["id"]
    assert west_full["arn"] == f"arn:aws:pcs:{WEST}:123456789012:cluster/{west_full['id']}"
    assert ":us-east-1:" in east_full["arn"]
    west_names = {c["name"] for c in await pages(west, "list_clusters", "clusters")}
    assert west_names == {c["name"] for c in demo_regions()[WEST]}
    with pytest.raises(ClientError) as raised:
        await west.get_cluster(clusterIdentifier=east_full["id"])
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"
    [queue] = (await west.list_queues(clusterIdentifier="demo-full"))["queues"]
    assert queue["arn"].startswith(west_full["arn"] + "/queue/")
    counts = fresh.http.get("/_emulator/calls").json()["byRegion"]
    assert counts["us-east-1"] == {"GetCluster": 1}
    assert counts[WEST] == {"GetCluster": 2, "ListClusters": 1, "ListQueues": 1}


@pytest.mark.parametrize(
    ("operation", "body", "code", "resource_type"),
    [
        ("ListQueues", {"clusterIdentifier": "nowhere"}, "ResourceNotFoundException", "cluster"),
        (
            "ListComputeNodeGroups",
            {"clusterIdentifier": "pcs_0000000000"},
            "ResourceNotFoundException",
            "cluster",
        ),
        (
            "GetQueue",
            {"clusterIdentifier": "demo-full", "queueIdentifier": "nowhere"},
            "ResourceNotFoundException",
            "queue",
        ),
        (
            "GetComputeNodeGroup",
            {"clusterIdentifier": "demo-full", "computeNodeGroupIdentifier": "pcs_0000000000"},
            "ResourceNotFoundException",
            "computeNodeGroup",
        ),
        (
            "ListTagsForResource",
            {"resourceArn": "arn:aws:pcs:us-east-1:123456789012:cluster/pcs_0000000000"},
            "ResourceNotFoundException",
            "resource",
        ),
        ("GetQueue", {"clusterIdentifier": "demo-full", "queueIdentifier": "x"}, "Validation", ""),
        ("ListTagsForResource", {"resourceArn": "arn:aws:s3:::bucket"}, "Validation", ""),
    ],
)
def test_unknown_or_invalid_resources_are_refused_as_pcs_does(
    fresh: Emulator, operation: str, body: dict[str, Any], code: str, resource_type: str
) -> None:
    status, answer = call(fresh.url, operation, body)
    assert status == 400
    assert answer["__type"].rsplit("#", 1)[-1].startswith(code)
    if resource_type:
        assert answer["resourceType"] == resource_type
        assert answer["resourceId"] in json.dumps(body)


@pytest.mark.parametrize("size", [0, 101, -1, "10", True])
def test_a_page_size_outside_1_to_100_is_a_validation_error(fresh: Emulator, size: Any) -> None:
    status, answer = call(
        fresh.url, "ListQueues", {"clusterIdentifier": "demo-full", "maxResults": size}
    )
    assert (status, answer["__type"]) == (400, "com.amazonaws.pcs#ValidationException")
    assert answer["fieldList"][0]["name"] == "maxResults"


def test_page_tokens_are_the_emulators_own_and_bound_to_their_listing(fresh: Emulator) -> None:
    status, first = call(
        fresh.url, "ListQueues", {"clusterIdentifier": "demo-full", "maxResults": 1}
    )
    token = first["nextToken"]
    assert status == 200
    _, second = call(
        fresh.url,
        "ListQueues",
        {"clusterIdentifier": "demo-full", "maxResults": 1, "nextToken": token},
    )
    assert second["queues"][0]["name"] > first["queues"][0]["name"]
    body, signature = token.split(".")
    tampered = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + signature
    for bad in ("1", "", tampered, token + "0"):
        status, answer = call(
            fresh.url, "ListQueues", {"clusterIdentifier": "demo-full", "nextToken": bad}
        )
        assert (status, answer["__type"]) == (400, "com.amazonaws.pcs#ValidationException"), bad
        assert answer["fieldList"][0]["name"] == "nextToken"
    status, answer = call(
        fresh.url, "ListComputeNodeGroups", {"clusterIdentifier": "demo-full", "nextToken": token}
    )
    assert status == 400 and "another listing" in answer["message"]


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, tzinfo=UTC).timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def timed() -> Iterator[tuple[Emulator, Clock]]:
    from gateway.emulator.app import create_emulator

    clock = Clock()
    app = create_emulator(clock=clock, settle_seconds=60, token_lifetime_seconds=3600)
    server = ServerThread(app, lifespan="off").start()
    try:
        yield Emulator(server.url), clock
    finally:
        server.stop()


def test_a_page_token_expires_after_its_lifetime(timed: tuple[Emulator, Clock]) -> None:
    emulator, clock = timed
    _, first = call(emulator.url, "ListClusters", {"maxResults": 2})
    clock.now += 3599
    follow = {"maxResults": 2, "nextToken": first["nextToken"]}
    assert call(emulator.url, "ListClusters", follow)[0] == 200
    clock.now += 2
    status, answer = call(emulator.url, "ListClusters", follow)
    assert (status, answer["message"]) == (400, "The nextToken has expired.")


def test_a_status_set_at_run_time_settles_after_the_settle_time(
    timed: tuple[Emulator, Clock],
) -> None:
    emulator, clock = timed
    changed = emulator.http.post(
        "/_emulator/clusters/demo-eu-active/status", json={"status": "UPDATING", "region": WEST}
    )
    assert changed.status_code == 200
    _, now = call(emulator.url, "GetCluster", {"clusterIdentifier": "demo-eu-active"}, WEST)
    assert now["cluster"]["status"] == "UPDATING"
    assert now["cluster"]["modifiedAt"] == clock.now
    _, east = call(emulator.url, "GetCluster", {"clusterIdentifier": "demo-active"})
    assert east["cluster"]["status"] == "ACTIVE", "another region is untouched"
    clock.now += 59
    _, still = call(emulator.url, "GetCluster", {"clusterIdentifier": "demo-eu-active"}, WEST)
    assert still["cluster"]["status"] == "UPDATING"
    clock.now += 1
    _, settled = call(emulator.url, "GetCluster", {"clusterIdentifier": "demo-eu-active"}, WEST)
    assert settled["cluster"]["status"] == "ACTIVE"
    assert settled["cluster"]["modifiedAt"] == clock.now


def test_a_deleting_queue_goes_away_and_seeded_statuses_stay(
    timed: tuple[Emulator, Clock],
) -> None:
    emulator, clock = timed
    route = "/_emulator/clusters/demo-full/status"
    assert emulator.http.post(route, json={"status": "DELETING", "queue": "debug"}).is_success
    get = {"clusterIdentifier": "demo-full", "queueIdentifier": "debug"}
    assert call(emulator.url, "GetQueue", get)[1]["queue"]["status"] == "DELETING"
    clock.now += 3600
    status, answer = call(emulator.url, "GetQueue", get)
    assert (status, answer["resourceType"]) == (400, "queue")
    _, creating = call(emulator.url, "GetCluster", {"clusterIdentifier": "demo-creating"})
    assert creating["cluster"]["status"] == "CREATING"


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"status": "updating"}, 400),
        ({"status": "UPDATING", "region": "mars"}, 400),
        ({"status": "UPDATING", "computeNodeGroup": "nowhere"}, 404),
        ([], 400),
    ],
)
def test_a_bad_status_change_is_refused_and_changes_nothing(
    fresh: Emulator, change: Any, status: int
) -> None:
    response = fresh.http.post("/_emulator/clusters/demo-full/status", json=change)
    assert response.status_code == status
    assert "error" in response.json()
    _, cluster = call(fresh.url, "GetCluster", {"clusterIdentifier": "demo-full"})
    assert cluster["cluster"]["status"] == "ACTIVE"
    assert cluster["cluster"]["modifiedAt"] == FULL["modifiedAt"]


async def test_an_operation_fault_hits_only_that_operation(fresh: Emulator, pcs: Any) -> None:
    fresh.faults({"operations": {"GetQueue": {"error": "InternalServerException", "times": 1}}})
    await pcs.get_cluster(clusterIdentifier="demo-full")
    with pytest.raises(ClientError) as raised:
        await pcs.get_queue(clusterIdentifier="demo-full", queueIdentifier="batch")
    assert raised.value.response["Error"]["Code"] == "InternalServerException"
    answer = await pcs.get_queue(clusterIdentifier="demo-full", queueIdentifier="batch")
    assert answer["queue"]["name"] == "batch"
    assert fresh.calls("GetQueue") == 2


async def test_a_resource_fault_hits_that_queue_or_node_group_by_name_or_id(
    fresh: Emulator, pcs: Any
) -> None:
    gpu = next(g for g in FULL["computeNodeGroups"] if g["name"] == "gpu-spot")
    fresh.faults(
        {
            "resources": {
                "batch": {"error": "ConflictException"},
                gpu["id"]: {"error": "AccessDeniedException"},
            }
        }
    )
    with pytest.raises(ClientError) as conflict:
        await pcs.get_queue(clusterIdentifier="demo-full", queueIdentifier="batch")
    assert conflict.value.response["Error"]["Code"] == "ConflictException"
    assert conflict.value.response["resourceType"] == "queue"
    with pytest.raises(ClientError) as denied:
        await pcs.get_compute_node_group(
            clusterIdentifier="demo-full", computeNodeGroupIdentifier=gpu["id"]
        )
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    assert (await pcs.get_queue(clusterIdentifier="demo-full", queueIdentifier="gpu"))["queue"]


def test_a_fault_for_an_operation_pcs_lacks_is_refused(fresh: Emulator) -> None:
    response = fresh.http.put("/_emulator/faults", json={"operations": {"GetQueues": {}}})
    assert response.status_code == 400
    assert "GetQueues" in response.json()["error"]


class PcsGraph:
    """The `resources` a request context offers the types, here straight over the PCS client."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.regions: list[str] = []

    async def cluster(self, region: str, identifier: str) -> ClusterAnswer | None:
        self.regions.append(region)
        wire = await self.client.get_cluster(clusterIdentifier=identifier)
        return ClusterAnswer(parse_cluster(wire["cluster"]), time.time(), time.time(), False, None)

    async def compute_node_group(
        self, region: str, cluster_id: str, identifier: str
    ) -> PcsComputeNodeGroup | None:
        self.regions.append(region)
        wire = await self.client.get_compute_node_group(
            clusterIdentifier=cluster_id, computeNodeGroupIdentifier=identifier
        )
        return parse_compute_node_group(wire["computeNodeGroup"])

    async def tags(self, region: str, arn: str) -> Tags:
        self.regions.append(region)
        return parse_tags((await self.client.list_tags_for_resource(resourceArn=arn))["tags"])


QUEUE_QUERY = """query($queue: String!) {
  queue(identifier: $queue) {
    name status statusRaw region clusterId
    tags { key value }
    cluster { name id }
    computeNodeGroupConfigurations { computeNodeGroupId }
    computeNodeGroups {
      name status purchaseOption purchaseOptionRaw launchTemplateMode
      customLaunchTemplate { id version }
      scalingConfiguration { minInstanceCount maxInstanceCount }
      instanceConfigs { instanceType }
      spotOptions { allocationStrategy allocationStrategyRaw }
      slurmConfiguration { scaleDownIdleTimeInSeconds gresCustomSettings { key value } }
      nodeLifecycleActions {
        scriptCachingPolicy
        stages {
          nodeBootstrapped { name arguments onError executionPolicy scriptSource { checksum } }
          nodeReady { name }
        }
      }
      instanceHealthChecks {
        healthMonitoring { mode repairAction }
        deepHealthChecks { onStart { profile repairAction repairActionRaw } }
      }
      errorInfo { code }
    }
  }
}"""


async def test_queue_and_node_group_types_present_what_pcs_sent(pcs: Any) -> None:
    @strawberry.type(description="One queue, for this test.")
    class Query:
        @strawberry.field(description="A queue of demo-full.")
        async def queue(self, identifier: str) -> Queue | None:
            wire = await pcs.get_queue(clusterIdentifier="demo-full", queueIdentifier=identifier)
            return parse_queue(wire["queue"])  # type: ignore[return-value]

    graph = PcsGraph(pcs)
    schema = strawberry.Schema(query=Query)
    result = await schema.execute(
        QUEUE_QUERY,
        variable_values={"queue": "gpu"},
        context_value=SimpleNamespace(resources=graph),
    )
    assert result.errors is None
    assert result.data is not None
    queue = result.data["queue"]
    assert (queue["name"], queue["status"], queue["statusRaw"]) == ("gpu", "ACTIVE", "ACTIVE")
    assert queue["region"] == "us-east-1"
    assert queue["cluster"] == {"name": "demo-full", "id": FULL["id"]}
    assert {"key": "Name", "value": "gpu"} in queue["tags"]
    groups = queue["computeNodeGroups"]
    assert [g["purchaseOption"] for g in groups] == [
        "SPOT",
        "CAPACITY_BLOCK",
        "INTERRUPTIBLE_CAPACITY_RESERVATION",
    ]
    spot = groups[0]
    assert spot["spotOptions"] == {
        "allocationStrategy": "PRICE_CAPACITY_OPTIMIZED",
        "allocationStrategyRaw": "price-capacity-optimized",
    }
    assert spot["slurmConfiguration"]["gresCustomSettings"] == [
        [
            {"key": "Name", "value": "gpu"},
            {"key": "Type", "value": "h100"},
            {"key": "File", "value": "/dev/nvidia[0-7]"},
        ],
        [{"key": "Name", "value": "shard"}, {"key": "Count", "value": "8"}],
    ]
    [boot] = spot["nodeLifecycleActions"]["stages"]["nodeBootstrapped"]
    assert boot["arguments"] == ["--fs", "lustre"]
    assert len(boot["scriptSource"]["checksum"]) == 64
    assert spot["instanceHealthChecks"]["deepHealthChecks"]["onStart"] == {
        "profile": "QUICK",
        "repairAction": "ISOLATE",
        "repairActionRaw": "ISOLATE",
    }
    assert spot["errorInfo"] == []
    assert set(graph.regions) == {"us-east-1"}


async def test_a_minimal_queue_has_empty_lists_and_null_objects(pcs: Any) -> None:
    wire = await pcs.get_queue(clusterIdentifier="demo-full", queueIdentifier="debug")
    queue = parse_queue(wire["queue"])
    assert queue.compute_node_group_configurations == ()
    assert queue.slurm_configuration is None
    assert queue.error_info == ()
    login = await pcs.get_compute_node_group(
        clusterIdentifier="demo-full", computeNodeGroupIdentifier="login"
    )
    group = parse_compute_node_group(login["computeNodeGroup"])
    assert (group.spot_options, group.node_lifecycle_actions, group.purchase_option) == (
        None,
        None,
        None,
    )
    assert group.scaling_configuration.max_instance_count == 4
    assert group.created_at.tzinfo is not None


async def test_list_summaries_parse_into_pages(pcs: Any) -> None:
    answer = await pcs.list_queues(clusterIdentifier="demo-full", maxResults=3)
    page = parse_page(answer, "queues", parse_queue_summary)
    assert [q.name for q in page.items] == ["batch", "debug", "gpu"]
    assert page.next_token == answer["nextToken"]
    assert {q.cluster_id for q in page.items} == {FULL["id"]}


def test_a_cluster_put_with_a_broken_queue_changes_nothing(fresh: Emulator) -> None:
    broken = dict(FULL, queues=[{"name": "no-id"}])
    response = fresh.http.put("/_emulator/clusters/demo-full", json=broken)
    assert response.status_code == 400
    status, answer = call(fresh.url, "ListQueues", {"clusterIdentifier": "demo-full"})
    assert status == 200
    assert sorted(q["name"] for q in answer["queues"]) == sorted(q["name"] for q in FULL["queues"])


def test_a_cluster_put_in_a_region_is_listed_there_only(fresh: Emulator) -> None:
    from gateway.emulator.seed import minimal

    added = minimal("demo-added", region="ap-south-1")
    assert fresh.http.put("/_emulator/clusters/demo-added?region=ap-south-1", json=added).is_success
    _, there = call(fresh.url, "ListClusters", {}, "ap-south-1")
    assert [c["name"] for c in there["clusters"]] == ["demo-added"]
    status, _ = call(fresh.url, "GetCluster", {"clusterIdentifier": "demo-added"})
    assert status == 400
    fresh.reset()
    _, emptied = call(fresh.url, "ListClusters", {}, "ap-south-1")
    assert emptied["clusters"] == []

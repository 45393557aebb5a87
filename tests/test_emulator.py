"""The emulator speaks PCS's protocol: botocore's own parser reads it, and it fits the model."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from gateway.emulator.seed import FUTURE_VALUE_CLUSTERS, demo_clusters
from gateway.pcs import model
from gateway.pcs.client import make_session
from tests.support.emulator_data import FULL, pages
from tests.support.servers import Emulator


@pytest.fixture
async def pcs(emulator: Emulator) -> AsyncIterator[Any]:
    emulator.reset()
    session = make_session()
    async with session.client(
        "pcs",
        endpoint_url=emulator.url,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret-example",
    ) as client:
        yield client


def conforms(value: Any, shape_name: str, path: str, problems: list[str]) -> None:
    """Check a parsed value against the model: required members, types, enum values."""
    shape = model.shapes()[shape_name]
    kind = shape["type"]
    if kind == "structure":
        if not isinstance(value, dict):
            problems.append(f"{path}: not an object")
            return
        for required in shape.get("required", []):
            if required not in value:
                problems.append(f"{path}.{required}: required member missing")
        for member, item in value.items():
            if member not in shape["members"]:
                problems.append(f"{path}.{member}: not in the model")
                continue
            conforms(item, shape["members"][member]["shape"], f"{path}.{member}", problems)
    elif kind == "list":
        if not isinstance(value, list):
            problems.append(f"{path}: not a list")
            return
        for index, item in enumerate(value):
            conforms(item, shape["member"]["shape"], f"{path}[{index}]", problems)
    elif kind == "string":
        if not isinstance(value, str):
            problems.append(f"{path}: not a string")
        elif "enum" in shape and value not in shape["enum"]:
            problems.append(f"{path}: {value!r} is not one of {shape['enum']}")
        elif "pattern" in shape and not re.search(shape["pattern"], value):
            problems.append(f"{path}: {value!r} does not match {shape['pattern']}")
    elif kind == "integer":
        if not isinstance(value, int) or not shape.get("min", value) <= value:
            problems.append(f"{path}: not an integer in range")
    elif kind == "timestamp" and (not isinstance(value, datetime) or value.tzinfo is None):
        problems.append(f"{path}: not an aware datetime")


MODEL_CLUSTERS = [c for c in demo_clusters() if c["name"] not in FUTURE_VALUE_CLUSTERS]


@pytest.mark.parametrize("wire", MODEL_CLUSTERS, ids=lambda c: c["name"])
async def test_seeded_clusters_parse_with_botocore_and_satisfy_the_model(
    pcs: Any, wire: dict[str, Any]
) -> None:
    answer = await pcs.get_cluster(clusterIdentifier=wire["name"])
    problems: list[str] = []
    conforms(answer["cluster"], "Cluster", "cluster", problems)
    assert problems == []
    assert set(answer["cluster"]) == set(wire)
    assert len(answer["ResponseMetadata"]["RequestId"]) == 36


def test_seeded_clusters_cover_every_status_endpoint_type_and_optional_member() -> None:
    clusters = MODEL_CLUSTERS
    assert {c["status"] for c in clusters} == set(model.enum_values("ClusterStatus"))
    endpoint_types = {e["type"] for c in clusters for e in c.get("endpoints", [])}
    assert endpoint_types == set(model.enum_values("EndpointType"))
    optional = set(model.shapes()["Cluster"]["members"]) - set(
        model.shapes()["Cluster"]["required"]
    )
    assert any(optional <= set(c) for c in clusters), "a cluster with every optional member"
    assert any(not (optional & set(c)) for c in clusters), "a cluster with none of them"
    slurm = set(model.shapes()["ClusterSlurmConfiguration"]["members"])
    assert any(slurm == set(c.get("slurmConfiguration", {})) for c in clusters)


async def test_list_clusters_pages_through_every_cluster(pcs: Any) -> None:
    names: list[str] = []
    paginator = pcs.get_paginator("list_clusters")
    async for page in paginator.paginate(PaginationConfig={"PageSize": 4}):
        for summary in page["clusters"]:
            problems: list[str] = []
            if summary["name"] not in FUTURE_VALUE_CLUSTERS:
                conforms(summary, "ClusterSummary", summary["name"], problems)
            assert problems == []
            names.append(summary["name"])
    assert sorted(names) == sorted(c["name"] for c in demo_clusters())


async def test_queues_and_node_groups_page_and_every_answer_fits_the_model(pcs: Any) -> None:
    problems: list[str] = []
    small = {"PageSize": 2}
    queues = await pages(
        pcs, "list_queues", "queues", clusterIdentifier="demo-full", PaginationConfig=small
    )
    groups = await pages(
        pcs,
        "list_compute_node_groups",
        "computeNodeGroups",
        clusterIdentifier=FULL["id"],
        PaginationConfig=small,
    )
    assert sorted(q["name"] for q in queues) == sorted(q["name"] for q in FULL["queues"])
    assert sorted(g["name"] for g in groups) == sorted(g["name"] for g in FULL["computeNodeGroups"])
    for summary in queues:
        conforms(summary, "QueueSummary", summary["name"], problems)
        by_id = await pcs.get_queue(clusterIdentifier="demo-full", queueIdentifier=summary["id"])
        conforms(by_id["queue"], "Queue", summary["name"], problems)
        assert by_id["queue"]["name"] == summary["name"]
        assert by_id["queue"]["clusterId"] == FULL["id"]
    for summary in groups:
        conforms(summary, "ComputeNodeGroupSummary", summary["name"], problems)
        by_name = await pcs.get_compute_node_group(
            clusterIdentifier=FULL["id"], computeNodeGroupIdentifier=summary["name"]
        )
        conforms(by_name["computeNodeGroup"], "ComputeNodeGroup", summary["name"], problems)
        assert by_name["computeNodeGroup"]["id"] == summary["id"]
    for arn in [FULL["arn"]] + [r["arn"] for r in queues + groups]:
        tags = await pcs.list_tags_for_resource(resourceArn=arn)
        conforms({"tags": tags["tags"]}, "ListTagsForResourceResponse", arn, problems)
        assert tags["tags"]["team"] == "research-computing"
    assert problems == []


# PCS's model sets no httpStatusCode: AWS JSON 1.0 then answers 400, or 500 for faults.
ERROR_MEMBERS = {
    "error-not-found": ("ResourceNotFoundException", 400, {"resourceId", "resourceType"}),
    "error-validation": ("ValidationException", 400, {"reason", "fieldList"}),
    "error-throttling": ("ThrottlingException", 400, {"retryAfterSeconds"}),
    "error-conflict": ("ConflictException", 400, {"resourceId", "resourceType"}),
    "error-access-denied": ("AccessDeniedException", 400, set()),
    "error-internal": ("InternalServerException", 500, set()),
}


# The SDK retries these two with backoff: seconds each.
RETRIED = {"error-throttling", "error-internal"}


@pytest.mark.parametrize(
    "identifier",
    [pytest.param(i, marks=pytest.mark.slow) if i in RETRIED else i for i in sorted(ERROR_MEMBERS)],
)
async def test_each_exception_arrives_as_botocore_models_it(pcs: Any, identifier: str) -> None:
    code, status, members = ERROR_MEMBERS[identifier]
    with pytest.raises(ClientError) as raised:
        await pcs.get_cluster(clusterIdentifier=identifier)
    response = raised.value.response
    assert response["Error"]["Code"] == code
    assert response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert members <= set(response)
    required = set(model.shapes()[code].get("required", [])) - {"message"}
    assert required <= set(response)


def test_unsigned_requests_and_unknown_operations_are_refused(emulator: Emulator) -> None:
    headers = {
        "content-type": "application/x-amz-json-1.0",
        "x-amz-target": "AWSParallelComputingService.GetCluster",
    }
    unsigned = httpx.post(emulator.url, headers=headers, content=b'{"clusterIdentifier":"x"}')
    assert unsigned.status_code == 403
    assert unsigned.json()["__type"] == "MissingAuthenticationTokenException"
    assert "x-amzn-requestid" in unsigned.headers


async def test_refused_access_keys_answer_like_pcs(emulator: Emulator) -> None:
    session = make_session()
    async with session.client(
        "pcs",
        endpoint_url=emulator.url,
        region_name="us-east-1",
        aws_access_key_id="expired",
        aws_secret_access_key="x",
    ) as client:
        with pytest.raises(ClientError) as raised:
            await client.get_cluster(clusterIdentifier="demo-active")
    assert raised.value.response["Error"]["Code"] == "ExpiredTokenException"

"""The PCS client's operations: the seven reads, nothing that changes PCS, typed answers."""

from __future__ import annotations

import ast
import asyncio
import inspect
from typing import Any

import pytest

from gateway.config import Settings
from gateway.pcs import client as client_module
from gateway.pcs import errors
from gateway.pcs.client import OPERATIONS, PcsClient
from gateway.pcs.model import load_model
from tests.support.servers import Emulator

READS = {
    "GetCluster",
    "ListClusters",
    "ListQueues",
    "GetQueue",
    "ListComputeNodeGroups",
    "GetComputeNodeGroup",
    "ListTagsForResource",
}


def test_the_client_can_call_exactly_the_seven_read_operations() -> None:
    assert set(OPERATIONS) == READS
    model = load_model()["operations"]
    for operation, method in OPERATIONS.items():
        assert operation in model
        assert model[operation]["http"]["method"] == "POST"
        assert method == "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip(
            "_"
        )
    assert "RegisterComputeNodeGroupInstance" not in OPERATIONS
    assert not {op for op in OPERATIONS if op.startswith(("Create", "Update", "Delete", "Tag"))}
    assert not {op for op in OPERATIONS if op.startswith("Untag")}


def test_the_client_reaches_aioboto3_only_through_the_guarded_call_path() -> None:
    tree = ast.parse(inspect.getsource(client_module))
    reached = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "_client"
        and node.attr != "meta"
    ]
    assert reached == []


def _run(emulator: Emulator, work: Any) -> Any:
    async def go() -> Any:
        async with PcsClient.open(Settings(), endpoint_url=emulator.url) as client:
            return await work(client)

    return asyncio.run(go())


def test_an_operation_outside_the_list_is_refused_before_any_call(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.reset()

    async def work(client: PcsClient) -> Any:
        with pytest.raises(ValueError, match="not an operation"):
            await client._call("RegisterComputeNodeGroupInstance", "x", {}, lambda answer: answer)

    _run(emulator, work)
    assert emulator.http.get("/_emulator/calls").json()["log"] == []


def test_each_read_answers_through_aioboto3_and_the_emulator(emulator: Emulator) -> None:
    emulator.reset()

    async def work(client: PcsClient) -> dict[str, Any]:
        page = await client.list_clusters(max_results=2, next_token=None)
        queues = await client.list_queues("demo-full", max_results=100, next_token=None)
        groups = await client.list_compute_node_groups(
            "demo-full", max_results=100, next_token=None
        )
        queue = await client.get_queue("demo-full", queues.wire["items"][0]["name"])
        group = await client.get_compute_node_group("demo-full", groups.wire["items"][0]["id"])
        tags = await client.list_tags_for_resource(queue.wire["arn"])
        with pytest.raises(errors.ResourceNotFound) as missing:
            await client.get_queue("demo-full", "no-such-queue")
        return {
            "page": page,
            "queues": queues,
            "groups": groups,
            "queue": queue,
            "group": group,
            "tags": tags,
            "missing": missing.value,
        }

    found = _run(emulator, work)
    assert len(found["page"].wire["items"]) == 2
    assert isinstance(found["page"].wire["nextToken"], str)
    assert [q["name"] for q in found["queues"].wire["items"]] == [
        "batch",
        "debug",
        "gpu",
        "interactive",
    ]
    assert found["queues"].wire["nextToken"] is None
    assert found["queue"].wire["name"] == "batch"
    assert found["group"].wire["id"] == found["groups"].wire["items"][0]["id"]
    assert found["tags"].wire["Name"] == "batch"
    assert found["missing"].message == "No queue with this identifier exists."
    assert found["missing"].resource_type == "queue"
    counts = emulator.http.get("/_emulator/calls").json()
    for operation in READS - {"GetCluster"}:
        assert counts[operation] >= 1, operation

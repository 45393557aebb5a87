"""The shipped PCS model: never older than the SDK's, fully reflected in the GraphQL schema."""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from typing import Any

import pytest
import strawberry
from graphql import (
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
)

from gateway.graphql.node_group_types import ComputeNodeGroup, ComputeNodeGroupConnection
from gateway.graphql.queue_types import Queue, QueueConnection
from gateway.graphql.resource_types import ClusterConnection
from gateway.graphql.schema import build_schema
from gateway.pcs import model
from gateway.pcs.compute_node_group import ComputeNodeGroup as PcsComputeNodeGroup
from gateway.pcs.queue import Queue as PcsQueue
from gateway.pcs.summary import ClusterSummary, ComputeNodeGroupSummary, QueueSummary
from tools import pcs_model


def test_shipped_model_has_everything_the_installed_sdk_knows() -> None:
    _, removed = pcs_model.diff_models(pcs_model.installed_sdk_model(), model.load_model())
    assert removed == [], f"the shipped PCS model lacks what the installed botocore has: {removed}"


def test_shipped_model_carries_what_pcs_added_since_the_pinned_sdk() -> None:
    facts = pcs_model.facts(model.load_model())
    for fact in (
        "member ClusterSlurmConfiguration.slurmRest",
        "member ClusterSlurmConfiguration.jwtAuth",
        "member ClusterSlurmConfiguration.cgroupCustomSettings",
        "member ClusterSlurmConfiguration.slurmdbdCustomSettings",
        "enum ClusterStatus.RESUMING",
        "enum EndpointType.SLURMRESTD",
    ):
        assert fact in facts


def test_shipped_model_has_no_prose_and_records_its_source() -> None:
    text = model.MODEL_FILE.read_text()
    assert '"documentation"' not in text
    source = json.loads(model.SOURCE_FILE.read_text())
    assert source["package"] == "botocore"
    assert tuple(map(int, source["version"].split("."))) >= (1, 44, 5)
    assert (model.DATA_PATH / "NOTICE").read_text().count("Apache License") == 1


def test_diff_lists_added_and_removed_shapes_members_and_enum_values() -> None:
    old = {
        "shapes": {
            "A": {"type": "structure", "members": {"x": {}}},
            "E": {"type": "string", "enum": ["ONE", "TWO"]},
        }
    }
    new = {
        "shapes": {
            "A": {"type": "structure", "members": {"x": {}, "y": {}}},
            "E": {"type": "string", "enum": ["ONE", "THREE"]},
            "B": {"type": "structure", "members": {}},
        }
    }
    added, removed = pcs_model.diff_models(old, new)
    assert added == ["enum E.THREE", "member A.y", "shape B"]
    assert removed == ["enum E.TWO"]


def test_strip_documentation_keeps_every_fact() -> None:
    raw = {
        "shapes": {
            "A": {
                "type": "structure",
                "documentation": "<p>x</p>",
                "members": {"m": {"shape": "S", "documentation": "y"}},
            }
        }
    }
    stripped = pcs_model.strip_documentation(raw)
    assert stripped == {"shapes": {"A": {"type": "structure", "members": {"m": {"shape": "S"}}}}}
    assert pcs_model.facts(stripped) == pcs_model.facts(raw)


async def test_the_sdk_session_reads_the_shipped_model() -> None:
    from gateway.pcs.client import make_session

    botocore_session = make_session()._session
    service = await botocore_session.get_service_model("pcs")
    members = service.shape_for("ClusterSlurmConfiguration").members
    assert {"slurmRest", "jwtAuth", "cgroupCustomSettings", "slurmdbdCustomSettings"} <= set(
        members
    )


def _unwrap(graphql_type: Any) -> Any:
    while isinstance(graphql_type, GraphQLNonNull | GraphQLList):
        graphql_type = graphql_type.of_type
    return graphql_type


def _walk(shape_name: str, graphql_type: Any, path: str, missing: list[str]) -> None:
    shape = model.shapes()[shape_name]
    kind = shape["type"]
    target = _unwrap(graphql_type)
    if kind == "structure":
        assert isinstance(target, GraphQLObjectType), path
        for member, ref in shape["members"].items():
            field = target.fields.get(member)
            if field is None:
                missing.append(f"{path}.{member}")
                continue
            _walk(ref["shape"], field.type, f"{path}.{member}", missing)
    elif kind == "list":
        assert isinstance(_strip_non_null(graphql_type), GraphQLList), path
        _walk(shape["member"]["shape"], _strip_non_null(graphql_type).of_type, path, missing)
    elif kind == "map":
        # A map is a list of { key value } entries.
        assert isinstance(_strip_non_null(graphql_type), GraphQLList), path
        entry = _unwrap(graphql_type)
        assert isinstance(entry, GraphQLObjectType) and set(entry.fields) == {"key", "value"}, path
    elif "enum" in shape:
        assert isinstance(target, GraphQLEnumType), path
        # A value that is not a GraphQL name (lowest-price) is spelled as one (LOWEST_PRICE).
        spelled = {value.upper().replace("-", "_"): value for value in shape["enum"]}
        absent = {spelled[name] for name in set(spelled) - set(target.values)}
        missing += [f"{path} = {value}" for value in sorted(absent)]
        assert "UNKNOWN" in target.values, path
    else:
        assert isinstance(target, GraphQLScalarType), path


def _strip_non_null(graphql_type: Any) -> Any:
    return graphql_type.of_type if isinstance(graphql_type, GraphQLNonNull) else graphql_type


def test_graphql_cluster_type_covers_every_member_and_enum_value_of_the_model() -> None:
    schema = build_schema()._schema
    missing: list[str] = []
    _walk("Cluster", schema.get_type("Cluster"), "Cluster", missing)
    assert missing == []


@strawberry.type(description="Reaches the resource types, for walking them.")
class _ResourceQuery:
    @strawberry.field(description="A queue.")
    def queue(self) -> Queue | None:
        return None

    @strawberry.field(description="A compute node group.")
    def compute_node_group(self) -> ComputeNodeGroup | None:
        return None

    @strawberry.field(description="A page of clusters.")
    def cluster_list(self) -> ClusterConnection | None:
        return None

    @strawberry.field(description="A page of queues.")
    def queue_list(self) -> QueueConnection | None:
        return None

    @strawberry.field(description="A page of compute node groups.")
    def compute_node_group_list(self) -> ComputeNodeGroupConnection | None:
        return None


def resource_schema() -> strawberry.Schema:
    """A schema with the queue and compute node group types, until the gateway's has them."""
    return strawberry.Schema(query=_ResourceQuery)


@pytest.mark.parametrize("shape", ["Queue", "ComputeNodeGroup"])
def test_graphql_resource_types_cover_every_member_and_enum_value_of_the_model(
    shape: str,
) -> None:
    schema = resource_schema()._schema
    missing: list[str] = []
    _walk(shape, schema.get_type(shape), shape, missing)
    assert missing == []


def test_every_resource_type_field_argument_and_enum_value_is_described() -> None:
    undescribed: list[str] = []
    for name, graphql_type in resource_schema()._schema.type_map.items():
        if name.startswith("__") or isinstance(graphql_type, GraphQLScalarType):
            continue
        if not graphql_type.description:
            undescribed.append(name)
        for field_name, field in getattr(graphql_type, "fields", {}).items():
            if not field.description:
                undescribed.append(f"{name}.{field_name}")
            undescribed += [
                f"{name}.{field_name}({a})" for a, arg in field.args.items() if not arg.description
            ]
        if isinstance(graphql_type, GraphQLEnumType):
            undescribed += [
                f"{name}.{v}" for v, value in graphql_type.values.items() if not value.description
            ]
    assert undescribed == []


def _snake(member: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", member).lower()


def _element(hint: Any) -> Any:
    """The class inside Optional[...] and tuple[..., ...]."""
    while True:
        origin = typing.get_origin(hint)
        if origin in (typing.Union, types.UnionType):
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        elif origin is tuple:
            hint = typing.get_args(hint)[0]
        else:
            return hint


def _walk_domain(shape_name: str, cls: Any, path: str, missing: list[str]) -> None:
    shape = model.shapes()[shape_name]
    if shape["type"] == "list":
        _walk_domain(shape["member"]["shape"], cls, path, missing)
        return
    if shape["type"] != "structure":
        return
    assert dataclasses.is_dataclass(cls), path
    hints = typing.get_type_hints(cls)
    for member, ref in shape["members"].items():
        field = _snake(member)
        if field not in hints:
            missing.append(f"{path}.{member}")
            continue
        _walk_domain(ref["shape"], _element(hints[field]), f"{path}.{member}", missing)


@pytest.mark.parametrize(
    ("shape", "cls"),
    [
        ("Queue", PcsQueue),
        ("ComputeNodeGroup", PcsComputeNodeGroup),
        ("ClusterSummary", ClusterSummary),
        ("QueueSummary", QueueSummary),
        ("ComputeNodeGroupSummary", ComputeNodeGroupSummary),
    ],
)
def test_domain_objects_cover_every_member_of_the_model(shape: str, cls: Any) -> None:
    missing: list[str] = []
    _walk_domain(shape, cls, shape, missing)
    assert missing == []
    assert cls.__dataclass_params__.frozen and hasattr(cls, "__slots__")


@pytest.mark.parametrize("argument", [["diff-sdk"]])
def test_model_command_reports_the_sdk_difference(
    argument: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert pcs_model.main(argument) == 0
    out = capsys.readouterr().out
    assert "+ member ClusterSlurmConfiguration.slurmRest" in out

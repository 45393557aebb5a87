"""The shipped PCS model: never older than the SDK's, fully reflected in the GraphQL schema."""

from __future__ import annotations

import json
from typing import Any

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
)

from gateway.graphql.schema import build_schema
from gateway.pcs import model
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
    elif "enum" in shape:
        assert isinstance(target, GraphQLEnumType), path
        absent = set(shape["enum"]) - set(target.values)
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


@pytest.mark.parametrize("argument", [["diff-sdk"]])
def test_model_command_reports_the_sdk_difference(
    argument: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert pcs_model.main(argument) == 0
    out = capsys.readouterr().out
    assert "+ member ClusterSlurmConfiguration.slurmRest" in out

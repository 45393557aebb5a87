"""Every part of the published schema is described for the portal developers who read it."""

from __future__ import annotations

from pathlib import Path

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    build_schema,
)

SCHEMA_FILE = Path(__file__).parent.parent / "schema" / "schema.graphql"
# Descriptions shorter than this say nothing a name does not already say.
SHORTEST_DESCRIPTION = 12


def undescribed(schema: GraphQLSchema) -> list[str]:
    """Coordinates (Type, Type.field, Type.field(arg:), Enum.VALUE) lacking a description."""
    missing: list[str] = []

    def check(coordinate: str, description: str | None) -> None:
        if description is None or len(description.strip()) < SHORTEST_DESCRIPTION:
            missing.append(coordinate)

    for name, type_ in sorted(schema.type_map.items()):
        if name.startswith("__"):
            continue
        check(name, type_.description)
        if isinstance(type_, GraphQLObjectType | GraphQLInterfaceType):
            for field_name, field in type_.fields.items():
                check(f"{name}.{field_name}", field.description)
                for arg_name, arg in field.args.items():
                    check(f"{name}.{field_name}({arg_name}:)", arg.description)
        elif isinstance(type_, GraphQLInputObjectType):
            for field_name, input_field in type_.fields.items():
                check(f"{name}.{field_name}", input_field.description)
        elif isinstance(type_, GraphQLEnumType):
            for value_name, value in type_.values.items():
                check(f"{name}.{value_name}", value.description)
    return missing


def test_every_type_field_argument_and_enum_value_has_a_description() -> None:
    schema = build_schema(SCHEMA_FILE.read_text())
    assert undescribed(schema) == []


def test_the_description_check_finds_what_lacks_one() -> None:
    schema = build_schema(
        'type Query { "The one cluster asked for." cluster(identifier: String): Status }\n'
        '"A lifecycle state of the test schema." enum Status { "It runs and takes jobs." '
        'ACTIVE "Off." OFF }'
    )
    assert undescribed(schema) == ["Query", "Query.cluster(identifier:)", "Status.OFF"]


def test_datetime_says_its_format_and_offset() -> None:
    schema = build_schema(SCHEMA_FILE.read_text())
    description = schema.type_map["DateTime"].description or ""
    assert "ISO 8601" in description
    assert "offset" in description

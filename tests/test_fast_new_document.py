"""The new-document path: only the validation rules that can refuse something here run."""

from __future__ import annotations

from gateway.config import Settings
from gateway.graphql.limits import INCREMENTAL_DELIVERY_RULES, validation_rules
from gateway.graphql.schema import build_schema
from tests.support.gateway import Gateway, GatewayFactory


def test_the_rules_left_out_cannot_refuse_anything_in_this_schema() -> None:
    # They check @defer and @stream; were the schema to offer them, the rules must come back.
    directives = {directive.name for directive in build_schema()._schema.directives}
    assert not directives & {"defer", "stream"}
    kept = validation_rules(Settings())
    assert not set(kept) & INCREMENTAL_DELIVERY_RULES
    assert "MaxIntrospectionDepthRule" in {rule.__name__ for rule in kept}
    production = validation_rules(Settings(introspection=False))
    assert "MaxIntrospectionDepthRule" not in {rule.__name__ for rule in production}


def test_a_document_with_defer_or_stream_is_still_refused(gateway: Gateway) -> None:
    for query in (
        '{ cluster(identifier: "demo-full") { ... @defer { name } } }',
        '{ clusters(identifiers: ["demo-full"]) @stream(initialCount: 1) { name } }',
    ):
        answer = gateway.query(query)
        assert "data" not in answer
        assert answer["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        assert "Unknown directive" in answer["errors"][0]["message"]


def test_deep_introspection_is_refused_when_introspection_is_off(
    start_gateway: GatewayFactory,
) -> None:
    gateway = start_gateway(introspection=False)
    answer = gateway.query("{ __schema { types { fields { type { fields { name } } } } } }")
    assert "data" not in answer
    assert answer["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"

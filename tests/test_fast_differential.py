"""Proof of sameness: compiled plans answer exactly as Strawberry's executor does.

Two gateways against the same emulator, equal but for compiled execution (on in one, off
in the other, Strawberry being the reference), answer cache off in both so every request
executes. Once a document is compiled, the compiled gateway answers it in the fast lane in
front of Starlette, and the tests check that the lane served it. Every example operation
and a generated corpus (random selections over the Cluster type with aliases, fragments,
inline fragments, `@include`/`@skip` on variables, `__typename`, batches with failing
items, not found, throttled, each caller partition) go to both; the answers must be equal
JSON but for `ageSeconds`, `fetchedAt` and request ids.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from graphql import GraphQLObjectType, GraphQLSchema, get_named_type
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from gateway.graphql.compiler import Plans
from gateway.graphql.schema import build_schema
from tests.support.gateway import Gateway, GatewayFactory, assert_no_leaks
from tests.support.servers import Emulator

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "schema" / "examples").glob("*.graphql"))
READER = "reader-key-0123456789abcdef"
ADMIN = "admin-key-0123456789abcdef0"
CALLERS = {"reader": {"x-api-key": READER}, "admin": {"x-api-key": ADMIN}}
IDENTIFIERS = [
    "demo-full",
    "demo-active",
    "demo-minimal",
    "demo-creating",
    "demo-future-status",
    "demo-future-endpoint",
    "error-not-found",
    "error-throttling",
    "error-access-denied",
    "not a valid id!",
]
SCHEMA: GraphQLSchema = build_schema()._schema
#: Fallback reasons the corpus may meet once the schema grows fields plans do not know yet.
GROWING = {"resolver", "arguments", "root_field"}
#: Signs page cursors alike in both gateways, so their cursors compare equal.
CURSOR_KEY = "differential-test-cursor-key-0123456789"


class Pair:
    """The compiled gateway and the reference, asked the same things."""

    def __init__(self, compiled: Gateway, reference: Gateway) -> None:
        self.compiled = compiled
        self.reference = reference

    def ask(self, body: dict[str, Any], caller: str) -> tuple[Any, Any]:
        headers = CALLERS[caller]
        first = self.compiled.http.post("/graphql", json=body, headers=headers)
        second = self.reference.http.post("/graphql", json=body, headers=headers)
        return comparable(first), comparable(second)

    def ask_lane(self, body: dict[str, Any], caller: str) -> tuple[Any, Any]:
        """Asked once the compiled gateway knows the document: answered by its lane, twice
        (the second time from the clusters' parts the first one rendered), the same."""
        headers = CALLERS[caller]
        for _ in range(2):  # seen, then compiled by the Strawberry path
            self.compiled.http.post("/graphql", json=body, headers=headers)
        first = self.ask(body, caller)
        again = self.ask(body, caller)
        assert again == first, body.get("query")
        return first

    @property
    def plans(self) -> Plans:
        plans = self.compiled.app.state.gateway.graphql.plans
        assert isinstance(plans, Plans)
        return plans


def comparable(response: httpx.Response) -> Any:
    """Status and answer, without what may differ between two correct answers."""
    answer = response.json()
    assert_no_leaks_but_secrets(answer)
    _strip(answer.get("data"))
    for entry in (answer.get("extensions") or {}).get("stale", []):
        entry.pop("ageSeconds", None)
    for error in answer.get("errors", []):
        (error.get("extensions") or {}).pop("requestId", None)  # each PCS call has its own
    # The order of errors is not part of GraphQL's contract: fields finish in any order.
    if "errors" in answer:
        answer["errors"].sort(key=lambda error: orjson.dumps(error))
    # Key order is compared too: the bytes of both answers must be the same JSON text.
    return response.status_code, orjson.dumps(answer)


def assert_no_leaks_but_secrets(answer: Any) -> None:
    assert_no_leaks({key: value for key, value in answer.items() if key != "data"})


def _strip(value: Any) -> None:
    if isinstance(value, dict):
        value.pop("ageSeconds", None)
        value.pop("fetchedAt", None)
        for item in value.values():
            _strip(item)
    elif isinstance(value, list):
        for item in value:
            _strip(item)


@pytest.fixture
def pair(start_gateway: GatewayFactory) -> Pair:
    common = {
        "api_keys": f"{READER},{ADMIN}:pcs-gateway:secrets",
        "answer_cache_max_entries": 0,
        "rate_limit": "off",
        "max_aliases": 1000,
        "cursor_key": CURSOR_KEY,
    }
    compiled = start_gateway(**common)
    reference = start_gateway(**common, compiled_plans_max_entries=0)
    return Pair(compiled, reference)


def test_every_example_operation_answers_the_same_compiled(pair: Pair) -> None:
    for path in EXAMPLES:
        for caller in CALLERS:
            compiled, reference = pair.ask({"query": path.read_text()}, caller)
            assert compiled == reference, path.name
            assert compiled[0] == 200
    # Each document ran on Strawberry the first time it came, by its plan since (or, for
    # the parts of the schema plans do not cover yet, on Strawberry, counted by reason).
    stats = pair.plans.stats
    assert stats.fallbacks.pop("new_document") == len(EXAMPLES)
    assert set(stats.fallbacks) <= GROWING
    assert stats.executions + sum(stats.fallbacks.values()) == len(EXAMPLES)
    assert stats.executions >= 4  # the status, full, batch and Slurm REST examples


def test_every_example_operation_answers_the_same_from_the_lane(pair: Pair) -> None:
    for path in EXAMPLES:
        for caller in CALLERS:
            compiled, reference = pair.ask_lane({"query": path.read_text()}, caller)
            assert compiled == reference, (path.name, caller)
            assert compiled[0] == 200
    served = pair.plans.stats.lane_served
    passed_on = pair.plans.stats.lane_fallbacks
    # Every known example came from the lane, but those plans do not cover yet.
    assert set(passed_on) - {"unknown_document", "not_compiled"} <= GROWING, passed_on
    # Four requests per example and caller; the first two of each example made its plan.
    assert served + sum(passed_on.get(reason, 0) for reason in GROWING) == (
        4 * len(EXAMPLES) * len(CALLERS) - 2 * len(EXAMPLES)
    )
    assert served >= 4 * 6  # the status, full, batch and Slurm REST examples, 6 times each


def test_a_document_is_compiled_when_it_comes_again(pair: Pair) -> None:
    body = {"query": 'query { cluster(identifier: "demo-active") { name } }'}
    for _ in range(3):
        compiled, reference = pair.ask(body, "reader")
        assert compiled == reference
    assert pair.plans.stats.fallbacks == {"new_document": 1}
    assert pair.plans.stats.executions == 2
    assert pair.plans.stats.compilations == 1
    # The third came when the plan was there: the lane answered it in front of Starlette.
    assert pair.plans.stats.lane_served == 1
    assert pair.plans.stats.lane_fallbacks == {"unknown_document": 1, "not_compiled": 1}
    metrics = pair.compiled.http.get("/metrics").text
    assert "pcsgw_compiled_executions_total 2.0" in metrics
    assert "pcsgw_compiled_plans 1.0" in metrics


def test_a_stale_answer_is_marked_the_same_compiled(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    common = {
        "api_keys": READER,
        "answer_cache_max_entries": 0,
        "cache_ttl_settled_seconds": 0.3,
        "cache_max_stale_seconds": 600,
    }
    pair = Pair(start_gateway(**common), start_gateway(**common, compiled_plans_max_entries=0))
    body = {"query": (ROOT / "schema" / "examples" / "cluster-full.graphql").read_text()}
    body["variables"] = {"identifier": "demo-active"}
    for _ in range(2):
        compiled, reference = pair.ask(body, "reader")
        assert compiled == reference
    time.sleep(0.4)
    emulator.faults({"clusters": {"demo-active": {"error": "ThrottlingException"}}})
    served = pair.plans.stats.lane_served
    compiled, reference = pair.ask(body, "reader")
    assert compiled == reference
    assert pair.plans.stats.lane_served == served + 1  # the stale answer came from the lane
    answer = orjson.loads(compiled[1])
    assert answer["data"]["cluster"]["freshness"]["stale"] is True
    assert answer["extensions"]["stale"] == [{"path": ["cluster"]}]


def test_a_batch_over_the_limit_nulls_the_data_the_same_compiled(
    start_gateway: GatewayFactory,
) -> None:
    common = {"answer_cache_max_entries": 0, "max_batch_size": 2}
    compiled = start_gateway(**common)
    reference = start_gateway(**common, compiled_plans_max_entries=0)
    body = {"query": 'query { clusters(identifiers: ["a1", "a2", "a3"]) { name } }'}
    answers = [comparable(g.http.post("/graphql", json=body)) for g in (compiled, reference)]
    assert answers[0] == answers[1]
    assert orjson.loads(answers[0][1])["data"] is None


def test_what_plans_do_not_cover_falls_back_and_is_counted(pair: Pair) -> None:
    for query, reason in (
        ("{ __schema { queryType { name } } }", "introspection"),
        ('query { cluster(identifier: "demo-active") @deprecated { name } }', None),
        ("query A { __typename } query B { __typename }", None),
    ):
        for _ in range(3):
            compiled, reference = pair.ask({"query": query}, "reader")
            assert compiled == reference
        if reason is not None:
            assert pair.plans.stats.fallbacks.get(reason) == 2
    metrics = pair.compiled.http.get("/metrics").text
    assert 'pcsgw_compiled_fallbacks_total{reason="introspection"} 2.0' in metrics
    # Only the two-operation document compiles (Strawberry names its first operation).
    assert pair.plans.stats.compilations == 1


# --- the generated corpus ---------------------------------------------------------------


class Document:
    """A document being generated: its fragments and the variables it reads."""

    def __init__(self) -> None:
        self.fragments: list[str] = []
        self.counter = 0

    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"


DIRECTIVES = ["", "", "", "@include(if: $yes)", "@include(if: $no)", "@skip(if: $yes)"]
DIRECTIVES += ["@skip(if: $no)", "@include(if: true)", "@skip(if: false)"]


def selection(data: st.DataObject, parent: GraphQLObjectType, depth: int, doc: Document) -> str:
    """A random selection set over `parent`: fields, aliases, fragments and directives."""
    names = sorted(name for name, field in parent.fields.items() if not field.args)
    chosen = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=6, unique=True))
    parts: list[str] = []
    if data.draw(st.integers(0, 4)) == 0:
        parts.append("__typename")
    for name in chosen:
        named = get_named_type(parent.fields[name].type)
        text = name
        # The moment-dependent fields keep their names, so the comparison can leave them out.
        if data.draw(st.integers(0, 3)) == 0 and name not in ("ageSeconds", "fetchedAt"):
            text = f"{doc.name('a')}: {name}"
        if isinstance(named, GraphQLObjectType):
            if depth >= 3:
                text += " { __typename }"
            else:
                text += " { " + selection(data, named, depth + 1, doc) + " }"
        directive = data.draw(st.sampled_from(DIRECTIVES))
        wrap = data.draw(st.integers(0, 5))
        if wrap == 0:
            text = f"... on {parent.name} {directive} {{ {text} }}"
        elif wrap == 1:
            text = f"... {directive} {{ {text} }}"
        elif wrap == 2:
            fragment = doc.name("F")
            doc.fragments.append(f"fragment {fragment} on {parent.name} {{ {text} }}")
            text = f"...{fragment} {directive}"
        else:
            text = f"{text} {directive}"
        parts.append(text)
    return " ".join(parts)


@st.composite
def operations(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    data = draw(st.data())
    doc = Document()
    cluster = SCHEMA.type_map["Cluster"]
    assert isinstance(cluster, GraphQLObjectType)
    roots = []
    variables: dict[str, Any] = {}
    for index in range(draw(st.integers(1, 2))):
        alias = f"r{index}: " if index else ""
        if draw(st.booleans()):
            variables[f"id{index}"] = draw(st.sampled_from(IDENTIFIERS))
            head = f"{alias}cluster(identifier: $id{index})"
        else:
            variables[f"ids{index}"] = draw(
                st.lists(st.sampled_from(IDENTIFIERS), min_size=0, max_size=4)
            )
            head = f"{alias}clusters(identifiers: $ids{index})"
        roots.append(f"{head} {{ {selection(data, cluster, 1, doc)} }}")
    body = " ".join(roots)
    text = body + " ".join(doc.fragments)
    definitions = [f"${name}: String!" for name in variables if not name.startswith("ids")]
    definitions += [f"${name}: [String!]!" for name in variables if name.startswith("ids")]
    for name in ("yes", "no"):
        if f"${name}" in text:
            definitions.append(f"${name}: Boolean!")
            variables[name] = name == "yes"
    query = f"query Q({', '.join(definitions)}) {{ {body} }} {' '.join(doc.fragments)}"
    caller = draw(st.sampled_from(sorted(CALLERS)))
    return {"query": query, "variables": variables}, caller


@pytest.mark.slow
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@seed(20260301)
@given(case=operations())
def test_a_generated_corpus_answers_the_same_compiled(
    pair: Pair, case: tuple[dict[str, Any], str]
) -> None:
    body, caller = case
    stats = pair.plans.stats
    pair.ask(body, caller)  # seen once: a document is compiled when it comes again
    before = stats.executions + sum(stats.fallbacks.values())
    compiled, reference = pair.ask(body, caller)
    assert compiled == reference, body["query"]
    assert set(stats.fallbacks) <= GROWING | {"new_document"}, stats.fallbacks
    if "data" in orjson.loads(compiled[1]):
        # It executed: by its plan (or, for a field plans do not know yet, counted).
        assert stats.executions + sum(stats.fallbacks.values()) == before + 1
    # Known now: the lane answers it in front of Starlette, the same again; and again from
    # the clusters' parts it rendered the first time.
    served = stats.lane_served
    compiled, reference = pair.ask(body, caller)
    assert compiled == reference, body["query"]
    passed_on = set(stats.lane_fallbacks) - {"unknown_document", "not_compiled"}
    if stats.lane_served == served:
        assert passed_on <= GROWING, stats.lane_fallbacks
    else:
        assert stats.lane_served == served + 1
        compiled, reference = pair.ask(body, caller)
        assert compiled == reference, body["query"]
        assert stats.lane_served == served + 2

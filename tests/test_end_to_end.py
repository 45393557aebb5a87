"""The whole path over real HTTP: gateway, real aioboto3 client, emulator on the PCS protocol."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.emulator.seed import demo_clusters, minimal
from tests.support.expected import as_received, expected_cluster
from tests.support.gateway import Gateway
from tests.support.servers import Emulator

EXAMPLES = Path(__file__).parent.parent / "schema" / "examples"
FULL_QUERY = (EXAMPLES / "cluster-full.graphql").read_text()


@pytest.mark.parametrize("wire", demo_clusters(), ids=lambda c: c["name"])
def test_every_field_of_every_demo_cluster_arrives_as_sent(gateway: Gateway, wire: dict) -> None:
    answer = gateway.query(FULL_QUERY, {"identifier": wire["name"]})
    assert "errors" not in answer
    assert as_received(answer["data"]["cluster"]) == expected_cluster(wire)


def test_a_cluster_is_found_by_its_id(gateway: Gateway) -> None:
    wire = demo_clusters()[0]
    answer = gateway.query(FULL_QUERY, {"identifier": wire["id"]})
    assert as_received(answer["data"]["cluster"]) == expected_cluster(wire)


# What this module pins is the app's behaviour, not the server's: no socket needed.
pytestmark = pytest.mark.gateway("in_process")


SIX_EXCEPTIONS = [
    ("error-not-found", "NOT_FOUND", "ResourceNotFoundException"),
    ("error-validation", "BAD_USER_INPUT", "ValidationException"),
    ("error-throttling", "THROTTLED", "ThrottlingException"),
    ("error-conflict", "CONFLICT", "ConflictException"),
    ("error-access-denied", "FORBIDDEN", "AccessDeniedException"),
    ("error-internal", "UPSTREAM_UNAVAILABLE", "InternalServerException"),
]

RETRIED = {"error-throttling", "error-internal"}


@pytest.mark.parametrize(
    ("identifier", "code", "aws_code"),
    [
        # The SDK retries throttling and internal errors with backoff: seconds each.
        pytest.param(*case, marks=pytest.mark.slow) if case[0] in RETRIED else case
        for case in SIX_EXCEPTIONS
    ],
)
def test_each_pcs_exception_has_its_code(
    gateway: Gateway, identifier: str, code: str, aws_code: str
) -> None:
    answer = gateway.query(
        "query($i: String!) { cluster(identifier: $i) { name } }", {"i": identifier}
    )
    assert answer["data"] == {"cluster": None}
    (error,) = answer["errors"]
    assert error["path"] == ["cluster"]
    assert error["extensions"]["code"] == code
    assert error["extensions"]["awsErrorCode"] == aws_code
    assert len(error["extensions"]["requestId"]) == 36


@pytest.mark.slow
def test_pcs_error_members_reach_the_client(gateway: Gateway) -> None:
    query = (
        '{ a: cluster(identifier: "error-not-found") { name } '
        'b: cluster(identifier: "error-validation") { name } '
        'c: cluster(identifier: "error-throttling") { name } }'
    )
    errors = {e["path"][0]: e["extensions"] for e in gateway.query(query)["errors"]}
    assert errors["a"]["resourceId"] == "error-not-found"
    assert errors["a"]["resourceType"] == "cluster"
    assert errors["b"]["reason"] == "fieldValidationFailed"
    assert errors["b"]["fieldList"] == [
        {"name": "clusterIdentifier", "message": "does not match the pattern"}
    ]
    assert errors["c"]["retryAfterSeconds"] == 2


@pytest.mark.parametrize(
    "identifier",
    [
        "",
        "x" * 5000,
        "demo active",
        "demo-'; DROP",
        "ab",
        "1abc",
        "pcs_",
        "démo-full",
        "demo\nfull",
    ],
    ids=[
        "empty",
        "5000-chars",
        "space",
        "quote",
        "too-short",
        "digit-first",
        "bare-prefix",
        "non-ascii",
        "newline",
    ],
)
def test_bad_identifiers_are_rejected_before_pcs(
    gateway: Gateway, emulator: Emulator, identifier: str
) -> None:
    answer = gateway.query(
        "query($i: String!) { cluster(identifier: $i) { name } }", {"i": identifier}
    )
    assert answer["data"] == {"cluster": None}
    assert answer["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT"}
    assert emulator.calls() == 0


def test_one_failing_alias_leaves_its_sibling_alone(gateway: Gateway) -> None:
    answer = gateway.query(
        '{ good: cluster(identifier: "demo-active") { name status } '
        'bad: cluster(identifier: "error-not-found") { name } }'
    )
    assert answer["data"]["good"] == {"name": "demo-active", "status": "ACTIVE"}
    assert answer["data"]["bad"] is None
    (error,) = answer["errors"]
    assert error["path"] == ["bad"]
    assert error["extensions"]["code"] == "NOT_FOUND"


def test_enum_values_pcs_adds_later_do_not_fail_the_query(
    gateway: Gateway, emulator: Emulator
) -> None:
    future = minimal("demo-tomorrow", "MIGRATING")
    future["size"] = "HUGE"
    future["scheduler"] = {"type": "PBS", "version": "2030.1"}
    future["endpoints"] = [{"type": "SLURMWEB", "privateIpAddress": "10.0.0.9", "port": "1"}]
    emulator.put_cluster(future)
    answer = gateway.query(FULL_QUERY, {"identifier": "demo-tomorrow"})
    assert "errors" not in answer
    cluster = answer["data"]["cluster"]
    assert (cluster["status"], cluster["statusRaw"]) == ("UNKNOWN", "MIGRATING")
    assert (cluster["size"], cluster["sizeRaw"]) == ("UNKNOWN", "HUGE")
    assert cluster["scheduler"]["typeRaw"] == "PBS"
    assert cluster["endpoints"][0]["typeRaw"] == "SLURMWEB"


def test_get_queries_work_and_mutations_are_not_offered(gateway: Gateway) -> None:
    response = gateway.http.get(
        "/graphql", params={"query": '{ cluster(identifier: "demo-active") { name } }'}
    )
    assert response.status_code == 200
    assert response.json()["data"]["cluster"]["name"] == "demo-active"


def test_an_unexpected_failure_is_masked(gateway: Gateway, emulator: Emulator) -> None:
    broken = minimal("demo-broken")
    broken["createdAt"] = "not a time"
    emulator.put_cluster(broken)
    answer = gateway.query('{ cluster(identifier: "demo-broken") { name createdAt } }')
    assert answer["data"] == {"cluster": None}
    error = answer["errors"][0]
    assert error["extensions"]["code"] in {"UPSTREAM_UNAVAILABLE", "INTERNAL_SERVER_ERROR"}
    assert "Traceback" not in str(answer) and ".py" not in str(answer)


def test_health_and_readiness(gateway: Gateway) -> None:
    assert gateway.http.get("/healthz").status_code == 200
    ready = gateway.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "cache": "ok",
        "pcsClient": "ok",
        "pcsBreaker": "closed",
        "pcsBreakers": {"us-east-1": "closed"},
    }


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.graphql")), ids=lambda p: p.stem)
def test_schema_examples_run(gateway: Gateway, example: Path) -> None:
    answer = gateway.query(example.read_text())
    assert answer["data"] is not None
    for error in answer.get("errors", []):
        assert error["extensions"]["code"] == "NOT_FOUND"


def test_a_huge_body_is_refused_with_413_and_changes_nothing(
    gateway: Gateway, emulator: Emulator
) -> None:
    padding = " " * 100_000
    query = '{ cluster(identifier: "demo-active") { name } }' + padding
    response = gateway.http.post("/graphql", json={"query": query})
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"

    def chunks() -> Iterator[bytes]:
        yield b'{"query": "{ cluster(identifier: \\"demo-active\\") { name } }'
        for _ in range(100):
            yield b" " * 1000
        yield b'"}'

    streamed = gateway.http.post(
        "/graphql", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert emulator.calls() == 0
    assert gateway.query('{ cluster(identifier: "demo-active") { name } }')["data"] == {
        "cluster": {"name": "demo-active"}
    }


def test_a_body_that_is_not_json_gets_a_clear_400(gateway: Gateway) -> None:
    response = gateway.http.post(
        "/graphql", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "JSON" in response.text
    assert "Traceback" not in response.text

"""The error contract end to end: every cause, over HTTP, through the real aioboto3 client.

Each test pins the exact `extensions` a frontend receives, the gateway's own message, how
many calls PCS saw, and the one server-side log line that names the cause.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from graphql.error import GraphQLError

from gateway.graphql.errors import CODES, log_errors, to_contract
from tests.support.gateway import AWS_TEST_ENVIRONMENT, Gateway, GatewayFactory
from tests.support.servers import Emulator, free_port

QUERY = "query($i: String!) { cluster(identifier: $i) { name } }"
CLIENT_LOG = "gateway.pcs.client"
API_DOCS = Path(__file__).resolve().parent.parent / "docs" / "api.md"


# What this module pins is the app's behaviour, not the server's: no socket needed.
pytestmark = pytest.mark.gateway("in_process")


def failing(gateway: Gateway, identifier: str = "demo-active") -> dict[str, Any]:
    """The one error of a cluster query that must fail, checked for shape and leaks."""
    answer = gateway.query(QUERY, {"i": identifier})
    assert answer["data"] == {"cluster": None}
    (error,) = answer["errors"]
    assert error["path"] == ["cluster"]
    assert error["message"] and error["message"][0].isupper()
    return dict(error)


def last_request_id(emulator: Emulator) -> str:
    """The AWS request id of the emulator's last answer."""
    log = emulator.http.get("/_emulator/calls").json()["log"]
    request_id: str = log[-1]["requestId"]
    assert re.fullmatch(r"[0-9a-f-]{36}", request_id)
    return request_id


def failure_logs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What the PCS client logged at warning and above: one line per failed call."""
    return [r for r in caplog.records if r.name == CLIENT_LOG and r.levelno >= logging.WARNING]


SIX_EXCEPTIONS: list[tuple[str, dict[str, Any], str, int]] = [
    (
        "error-not-found",
        {
            "code": "NOT_FOUND",
            "awsErrorCode": "ResourceNotFoundException",
            "resourceId": "error-not-found",
            "resourceType": "cluster",
        },
        "No cluster with this identifier exists.",
        1,
    ),
    (
        "error-validation",
        {
            "code": "BAD_USER_INPUT",
            "awsErrorCode": "ValidationException",
            "reason": "fieldValidationFailed",
            "fieldList": [{"name": "clusterIdentifier", "message": "does not match the pattern"}],
        },
        "PCS rejected the request's input.",
        1,
    ),
    (
        "error-throttling",
        {"code": "THROTTLED", "awsErrorCode": "ThrottlingException", "retryAfterSeconds": 2},
        "PCS is throttling requests; retry later.",
        3,
    ),
    (
        "error-conflict",
        {
            "code": "CONFLICT",
            "awsErrorCode": "ConflictException",
            "resourceId": "error-conflict",
            "resourceType": "cluster",
        },
        "The request conflicts with the cluster's current state.",
        1,
    ),
    (
        "error-access-denied",
        {"code": "FORBIDDEN", "awsErrorCode": "AccessDeniedException"},
        "The gateway is not allowed to read this cluster.",
        1,
    ),
    (
        "error-internal",
        {"code": "UPSTREAM_UNAVAILABLE", "awsErrorCode": "InternalServerException"},
        "PCS failed to answer.",
        3,
    ),
]


@pytest.mark.parametrize(
    ("identifier", "extensions", "message", "calls"),
    [
        # The SDK retries throttling and internal errors with backoff: seconds each.
        pytest.param(*case, marks=pytest.mark.slow) if case[3] > 1 else case
        for case in SIX_EXCEPTIONS
    ],
    ids=[case[0] for case in SIX_EXCEPTIONS],
)
def test_each_pcs_exception_reaches_the_client_with_exact_extensions(
    start_gateway: GatewayFactory,
    emulator: Emulator,
    identifier: str,
    extensions: dict[str, Any],
    message: str,
    calls: int,
) -> None:
    # Three attempts: throttling and 5xx are retried to the limit, the others never.
    gateway = start_gateway(pcs_max_attempts=3)
    error = failing(gateway, identifier)
    assert error["extensions"] == extensions | {"requestId": last_request_id(emulator)}
    assert error["message"] == message
    assert emulator.calls() == calls


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose listen queue is full: connecting to it times out instead of failing."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port: int = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for sock in (*fillers, server):
            sock.close()


@pytest.mark.parametrize(
    ("fault", "message", "cause"),
    [
        ({"reset": True}, "PCS could not be reached.", "ConnectionClosedError"),
        (
            {"malformed": "garbage"},
            "PCS sent an answer the gateway could not read.",
            "no readable cluster",
        ),
        (
            {"malformed": "truncated"},
            "PCS sent an answer the gateway could not read.",
            "no readable cluster",
        ),
        (
            {"malformed": "empty"},
            "PCS sent an answer the gateway could not read.",
            "no readable cluster",
        ),
    ],
    ids=["reset", "garbage", "truncated", "empty"],
)
def test_broken_answers_are_upstream_unavailable_and_logged_with_their_cause(
    start_gateway: GatewayFactory,
    emulator: Emulator,
    caplog: pytest.LogCaptureFixture,
    fault: dict[str, Any],
    message: str,
    cause: str,
) -> None:
    gateway = start_gateway(pcs_max_attempts=1)
    emulator.faults({"clusters": {"demo-active": fault}})
    error = failing(gateway)
    expected: dict[str, Any] = {"code": "UPSTREAM_UNAVAILABLE"}
    if "malformed" in fault:
        # PCS did answer (HTTP 200): its request id helps AWS support find the call.
        expected["requestId"] = last_request_id(emulator)
    assert error["extensions"] == expected
    assert error["message"] == message
    (record,) = failure_logs(caplog)
    assert "demo-active" in record.getMessage()
    assert cause in record.getMessage()


def test_an_error_code_pcs_does_not_define_is_upstream_unavailable_with_its_code(
    start_gateway: GatewayFactory, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = start_gateway(pcs_max_attempts=3)
    emulator.faults({"clusters": {"demo-active": {"error": "ShinyNewException"}}})
    error = failing(gateway)
    assert error["extensions"] == {
        "code": "UPSTREAM_UNAVAILABLE",
        "awsErrorCode": "ShinyNewException",
        "requestId": last_request_id(emulator),
    }
    assert error["message"] == "PCS answered with an error the gateway does not know."
    assert emulator.calls() == 1, "a 4xx the SDK does not know is not retried"
    (record,) = failure_logs(caplog)
    assert "UnknownPcsError ShinyNewException" in record.getMessage()


@pytest.mark.slow
def test_a_5xx_with_a_code_pcs_does_not_define_is_retried_and_upstream_unavailable(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(pcs_max_attempts=3)
    emulator.faults({"global": {"error": "ServiceUnavailableException", "httpStatus": 503}})
    error = failing(gateway)
    assert error["extensions"] == {
        "code": "UPSTREAM_UNAVAILABLE",
        "awsErrorCode": "ServiceUnavailableException",
        "requestId": last_request_id(emulator),
    }
    assert error["message"] == "PCS failed to answer."
    assert emulator.calls() == 3


def test_a_read_timeout_is_upstream_unavailable(
    start_gateway: GatewayFactory, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = start_gateway(pcs_read_timeout_seconds=0.3, pcs_max_attempts=1)
    emulator.faults({"clusters": {"demo-active": {"latencySeconds": 2}}})
    error = failing(gateway)
    assert error["extensions"] == {"code": "UPSTREAM_UNAVAILABLE"}
    assert error["message"] == "PCS could not be reached."
    (record,) = failure_logs(caplog)
    assert "ReadTimeoutError" in record.getMessage()


def test_a_connect_timeout_is_upstream_unavailable(
    start_gateway: GatewayFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    full_backlog: int,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_PCS", f"http://127.0.0.1:{full_backlog}")
    gateway = start_gateway(pcs_connect_timeout_seconds=0.3, pcs_max_attempts=1)
    error = failing(gateway)
    assert error["extensions"] == {"code": "UPSTREAM_UNAVAILABLE"}
    (record,) = failure_logs(caplog)
    assert "ConnectTimeoutError" in record.getMessage()


def test_connection_refused_is_upstream_unavailable(
    start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_PCS", f"http://127.0.0.1:{free_port()}")
    gateway = start_gateway(pcs_max_attempts=1)
    error = failing(gateway)
    assert error["extensions"] == {"code": "UPSTREAM_UNAVAILABLE"}
    assert error["message"] == "PCS could not be reached."
    (record,) = failure_logs(caplog)
    assert "EndpointConnectionError" in record.getMessage()


@pytest.mark.parametrize(
    ("access_key", "aws_code"),
    [("expired", "ExpiredTokenException"), ("invalid", "UnrecognizedClientException")],
)
def test_credentials_pcs_refuses_are_upstream_credentials(
    start_gateway: GatewayFactory,
    emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    access_key: str,
    aws_code: str,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", access_key)
    gateway = start_gateway()
    error = failing(gateway)
    assert error["extensions"] == {
        "code": "UPSTREAM_CREDENTIALS",
        "awsErrorCode": aws_code,
        "requestId": last_request_id(emulator),
    }
    assert error["message"] == "PCS did not accept the gateway's AWS credentials."
    (record,) = failure_logs(caplog)
    assert record.levelno == logging.ERROR, "an operator must act on the gateway's credentials"
    assert aws_code in record.getMessage()


def test_missing_credentials_are_upstream_credentials_and_pcs_is_never_called(
    start_gateway: GatewayFactory,
    emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    gateway = start_gateway()
    error = failing(gateway)
    assert error["extensions"] == {"code": "UPSTREAM_CREDENTIALS"}
    assert error["message"] == "The gateway has no usable AWS credentials."
    assert emulator.calls() == 0
    (record,) = failure_logs(caplog)
    assert "NoCredentialsError" in record.getMessage()


def test_one_failed_call_is_logged_once_however_many_fields_waited_on_it(
    start_gateway: GatewayFactory, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = start_gateway(pcs_max_attempts=1)
    emulator.faults({"clusters": {"demo-active": {"latencySeconds": 0.3, "reset": True}}})
    aliases = " ".join(f'a{n}: cluster(identifier: "demo-active") {{ name }}' for n in range(20))
    answer = gateway.query(f"{{ {aliases} }}")
    assert answer["data"] == {f"a{n}": None for n in range(20)}
    assert {e["extensions"]["code"] for e in answer["errors"]} == {"UPSTREAM_UNAVAILABLE"}
    assert emulator.calls() == 1
    assert len(failure_logs(caplog)) == 1


def test_logs_never_carry_the_aws_secret(
    start_gateway: GatewayFactory,
    emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "invalid")
    gateway = start_gateway(pcs_max_attempts=1)
    failing(gateway)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS_TEST_ENVIRONMENT["AWS_ACCESS_KEY_ID"])
    gateway = start_gateway(pcs_max_attempts=1)
    for fault in ({"reset": True}, {"error": "InternalServerException"}):
        emulator.faults({"global": fault})
        failing(gateway, "demo-full")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "GetCluster demo-full failed" in logged
    assert AWS_TEST_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"] not in logged


def test_an_identifier_the_gateway_rejects_never_reaches_pcs(
    gateway: Gateway, emulator: Emulator
) -> None:
    error = failing(gateway, "1-not-a-name")
    assert error["extensions"] == {"code": "BAD_USER_INPUT"}
    assert emulator.calls() == 0


def test_a_batch_over_the_limit_is_bad_user_input_with_the_limit(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(max_batch_size=2)
    answer = gateway.query('{ clusters(identifiers: ["demo-active", "demo-full", "x"]) { name } }')
    (error,) = answer["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "limit": 2}
    assert error["message"] == "A batch may ask for at most 2 clusters."
    assert emulator.calls() == 0


def test_the_docs_error_table_lists_every_code() -> None:
    section = API_DOCS.read_text().split("## Errors", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([A-Z][A-Z_]+)`", section))
    assert set(CODES.values()) <= documented
    assert {"INTERNAL_SERVER_ERROR", "GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED"} <= (
        documented
    )


def test_an_unexpected_cause_is_masked_and_logged_with_its_stack(
    caplog: pytest.LogCaptureFixture,
) -> None:
    leaky = RuntimeError(
        f"boom in /srv/gateway/x.py with {AWS_TEST_ENVIRONMENT['AWS_SECRET_ACCESS_KEY']}"
    )
    error = GraphQLError("boom", path=["cluster"], original_error=leaky)
    log_errors([error])
    public = to_contract(error).formatted
    assert public == {
        "message": "Unexpected error.",
        "path": ["cluster"],
        "extensions": {"code": "INTERNAL_SERVER_ERROR"},
    }
    (record,) = [r for r in caplog.records if r.name == "gateway.graphql"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and record.exc_info[1] is leaky

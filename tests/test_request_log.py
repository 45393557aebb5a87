"""The request log: one line per request, carrying the request id its response carries."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from gateway.config import Settings
from gateway.observe.logs import (
    ConsoleFormatter,
    JsonFormatter,
    LineHandler,
    log_fields,
    logging_config,
    redact,
    uses_json,
)
from tests.support.gateway import Gateway, GatewayFactory
from tests.support.request_lines import request_lines
from tests.support.servers import Emulator

QUERY = "query ClusterName($i: String!) { cluster(identifier: $i) { name } }"


# What this module pins is the app's behaviour, not the server's: no socket needed.
pytestmark = pytest.mark.gateway("in_process")


def test_the_log_line_carries_the_response_request_id_and_the_aws_request_id(
    gateway: Gateway, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.requests")
    response = gateway.http.post(
        "/graphql",
        json={"query": QUERY, "variables": {"i": "demo-active"}},
        headers={"x-request-id": "portal-bug-4711"},
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "portal-bug-4711"
    aws_request_id = emulator.http.get("/_emulator/calls").json()["log"][-1]["requestId"]
    [line] = request_lines(caplog, "portal-bug-4711")
    assert line["aws_request_ids"] == [aws_request_id]
    assert line["level"] == "info"
    assert line["logger"] == "gateway.requests"
    assert line["message"] == "POST /graphql 200"
    assert line["operation"] == "ClusterName"
    assert line["operation_type"] == "query"
    assert (line["status"], line["outcome"], line["cache"], line["errors"]) == (
        200,
        "success",
        "miss",
        [],
    )
    assert line["duration_ms"] > 0
    assert "trace_id" not in line  # tracing is off


def test_a_failed_call_logs_its_code_and_the_request_id_pcs_gave(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.requests")
    response = gateway.http.post(
        "/graphql",
        json={"query": '{ a: cluster(identifier: "error-not-found") { name } }'},
    )
    error = response.json()["errors"][0]["extensions"]
    [line] = request_lines(caplog, response.headers["x-request-id"])
    assert line["operation"] is None
    assert (line["outcome"], line["errors"], line["cache"]) == ("partial", ["NOT_FOUND"], "miss")
    assert line["aws_request_ids"] == [error["requestId"]]


def test_answers_of_the_answer_cache_carry_their_own_request_id_and_line(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.requests")
    body = {"query": QUERY, "variables": {"i": "demo-full"}}
    first = gateway.http.post("/graphql", json=body)
    second = gateway.http.post("/graphql", json=body, headers={"x-request-id": "repeat-1"})
    third = gateway.http.post("/graphql", json=body)
    assert gateway.app.stats.hits == 2
    assert second.headers["x-request-id"] == "repeat-1"
    ids = {r.headers["x-request-id"] for r in (first, second, third)}
    assert len(ids) == 3
    [line] = request_lines(caplog, "repeat-1")
    assert (line["cache"], line["operation"], line["outcome"], line["aws_request_ids"]) == (
        "answer",
        "ClusterName",
        "success",
        [],
    )
    assert request_lines(caplog, third.headers["x-request-id"])[0]["cache"] == "answer"


#: The order of a request line's fields in JSON, answers of the answer cache included.
LINE_KEYS = [
    "time",
    "level",
    "logger",
    "message",
    "request_id",
    "method",
    "path",
    "status",
    "duration_ms",
    "operation",
    "operation_type",
    "outcome",
    "cache",
    "errors",
    "aws_request_ids",
    "regions",
]
CONSOLE_HIT = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO    gateway\.requests: POST /graphql 200  "
    r"request_id=line-hit duration_ms=\d+\.\d+ operation=ClusterName operation_type=query "
    r"outcome=success cache=answer"
)


def written_lines(gateway: Gateway, formatter: logging.Formatter) -> list[str]:
    """The lines a miss and then a hit write through the gateway's own handler alone."""
    stream = RecordingStream()
    handler = LineHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("gateway.requests")
    saved = logger.handlers, logger.propagate, logger.level
    # Alone on the logger: the lines go straight to the stream, no record made.
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.INFO)
    try:
        body = {"query": QUERY, "variables": {"i": "demo-full"}}
        for name in ("line-miss", "line-hit"):
            gateway.http.post("/graphql", json=body, headers={"x-request-id": name})
        deadline = time.monotonic() + 10
        while stream.flushed.count("\n") < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        logger.handlers, logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])
    assert gateway.app.stats.hits == 1
    return stream.flushed.splitlines()


def test_a_hit_writes_its_json_line_as_any_request_does(gateway: Gateway) -> None:
    miss, hit = (json.loads(line) for line in written_lines(gateway, JsonFormatter()))
    assert list(miss) == list(hit) == LINE_KEYS
    assert {key: hit[key] for key in LINE_KEYS if key not in ("time", "duration_ms")} == {
        "level": "info",
        "logger": "gateway.requests",
        "message": "POST /graphql 200",
        "request_id": "line-hit",
        "method": "POST",
        "path": "/graphql",
        "status": 200,
        "operation": "ClusterName",
        "operation_type": "query",
        "outcome": "success",
        "cache": "answer",
        "errors": [],
        "aws_request_ids": [],
        "regions": [],
    }
    assert (miss["request_id"], miss["cache"], miss["regions"]) == (
        "line-miss",
        "miss",
        ["us-east-1"],
    )
    assert isinstance(hit["duration_ms"], float) and hit["time"].endswith("Z")


def test_a_hit_writes_its_console_line_as_any_request_does(gateway: Gateway) -> None:
    miss, hit = written_lines(gateway, ConsoleFormatter())
    assert " request_id=line-miss " in miss and " cache=miss aws_request_ids=" in miss
    assert miss.endswith(" regions=us-east-1")
    assert CONSOLE_HIT.fullmatch(hit), hit


@pytest.mark.parametrize(
    "sent",
    ["", "has space", "x" * 129, "semi;colon", 'quote"', "\u00e9t\u00e9"],
)
def test_an_unfit_request_id_is_replaced_by_a_new_one(gateway: Gateway, sent: str) -> None:
    response = gateway.http.post(
        "/graphql",
        json={"query": "{ __typename }"},
        headers={"x-request-id": sent.encode("utf-8")},  # type: ignore[dict-item]
    )
    returned = response.headers["x-request-id"]
    assert returned != sent
    assert len(returned) == 32 and int(returned, 16) >= 0


def test_every_response_carries_a_request_id(gateway: Gateway) -> None:
    for response in (
        gateway.http.get("/healthz"),
        gateway.http.get("/metrics"),
        gateway.http.get("/no/such/path"),
        gateway.http.post("/graphql", content=b"{", headers={"content-type": "application/json"}),
        gateway.http.post("/graphql", content=b"x" * 100_000),
    ):
        assert len(response.headers["x-request-id"]) == 32, response.status_code
    longest = "a.b:c-d_" * 16
    assert (
        gateway.http.get("/healthz", headers={"x-request-id": longest}).headers["x-request-id"]
        == longest
    )


def test_a_path_never_forges_a_log_line(gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.requests")
    response = gateway.http.get(
        "/x%0A2026-01-01%20INFO%20forged", headers={"x-request-id": "forge-1"}
    )
    assert response.status_code == 404
    request_lines(caplog, "forge-1")
    [record] = [
        r for r in caplog.records if getattr(r, "fields", {}).get("request_id") == "forge-1"
    ]
    text = ConsoleFormatter().format(record)
    assert "\n" not in text
    assert "GET /x\\n2026-01-01 INFO forged 404" in text


def test_the_console_format_is_one_readable_line(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.requests")
    gateway.http.post(
        "/graphql",
        json={"query": QUERY, "variables": {"i": "demo-minimal"}},
        headers={"x-request-id": "console-1"},
    )
    request_lines(caplog, "console-1")
    [record] = [
        r for r in caplog.records if getattr(r, "fields", {}).get("request_id") == "console-1"
    ]
    text = ConsoleFormatter().format(record)
    assert "\n" not in text
    assert " INFO    gateway.requests: POST /graphql 200  request_id=console-1 " in text
    assert "operation=ClusterName" in text and "outcome=success cache=miss" in text


def test_json_in_production_and_console_in_development_unless_set() -> None:
    production = {"environment": "production", "api_keys": "k-0123456789abcdef"}
    assert uses_json(Settings(**production))
    assert not uses_json(Settings())
    assert uses_json(Settings(log_format="json"))
    assert not uses_json(Settings(**production, log_format="console"))
    config = logging_config(Settings(log_level="debug"))
    assert config["root"]["level"] == "DEBUG"
    # The SDK's debug output prints signed request headers: never below INFO.
    assert config["loggers"]["botocore"]["level"] == "INFO"


def test_credentials_are_masked_in_text_that_is_not_the_gateways_own() -> None:
    text = redact(
        "headers {'Authorization': 'Bearer eyJhbGciOi.secret-part', 'X-API-Key': 'k-123456'} "
        "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/2026, Signature=0123abcd "
        "redis://user:hunter2@cache:6379/0 aws_secret_access_key=wJalrXUtnFEMI token=abc.def"
    )
    for secret in (
        "eyJhbGciOi",
        "secret-part",
        "k-123456",
        "AKIDEXAMPLE",
        "0123abcd",
        "hunter2",
        "wJalrXUtnFEMI",
        "abc.def",
    ):
        assert secret not in text, text
    assert "redis://user:[redacted]@cache:6379/0" in text


@pytest.mark.slow
def test_a_stale_answer_logs_the_failed_call_and_a_coalesced_wait_the_call_it_waited_for(
    start_gateway: GatewayFactory, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.requests")
    gateway = start_gateway(pcs_max_attempts=1, cache_ttl_settled_seconds=0.2)
    # Long enough that the second request arrives while the first one's call is under way.
    emulator.faults({"global": {"latencySeconds": 1.5}})

    def ask(name: str) -> httpx.Response:
        query = f'query {name} {{ cluster(identifier: "demo-active") {{ name }} }}'
        return gateway.http.post("/graphql", json={"query": query}, headers={"x-request-id": name})

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(ask, ["First", "Second"]))
    assert [a.json()["data"]["cluster"]["name"] for a in answers] == ["demo-active"] * 2
    assert emulator.calls() == 1
    [call] = emulator.http.get("/_emulator/calls").json()["log"]
    lines = {name: request_lines(caplog, name)[0] for name in ("First", "Second")}
    assert sorted(line["cache"] for line in lines.values()) == ["coalesced", "miss"]
    assert all(line["aws_request_ids"] == [call["requestId"]] for line in lines.values())

    emulator.faults({"clusters": {"demo-active": {"error": "ThrottlingException"}}})
    time.sleep(0.3)  # past the freshness of the cluster and of the stored answer
    stale = ask("Third")
    assert stale.json()["extensions"]["stale"][0]["path"] == ["cluster"]
    throttled = emulator.http.get("/_emulator/calls").json()["log"][-1]
    assert throttled["status"] == 400
    [line] = request_lines(caplog, "Third")
    assert (line["cache"], line["outcome"], line["errors"]) == ("stale", "success", [])
    assert line["aws_request_ids"] == [throttled["requestId"]]


class RecordingStream:
    """A stream that keeps what was written and what had been flushed."""

    def __init__(self) -> None:
        self.text = ""
        self.flushed = ""

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        self.flushed = self.text


def test_lines_are_held_for_the_flush_time_and_written_before_a_record() -> None:
    stream = RecordingStream()
    handler = LineHandler(stream, flush_seconds=0.05)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("pcsgw-test-held-lines")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)

    async def load() -> None:
        for index in range(3):
            log_fields(logger, logging.INFO, "line", {"request_id": f"r{index}"})
            await asyncio.sleep(0)  # rounds go by: the lines are held together
        assert stream.text == ""
        await asyncio.sleep(0.1)
        assert stream.flushed.count("\n") == 3  # one write, once the time has passed
        log_fields(logger, logging.INFO, "line", {"request_id": "before-warning"})
        logger.warning("a record")  # the lines held go first, in order
        assert stream.flushed.count("\n") == 5
        log_fields(logger, logging.INFO, "line", {"request_id": "at-shutdown"})

    asyncio.run(load())
    assert "at-shutdown" not in stream.text
    handler.flush()  # as logging's shutdown does
    lines = [json.loads(line) for line in stream.text.splitlines()]
    assert [line.get("request_id", line["message"]) for line in lines] == [
        "r0",
        "r1",
        "r2",
        "before-warning",
        "a record",
        "at-shutdown",
    ]


def test_lines_are_flushed_once_per_event_loop_round_and_at_once_outside_a_loop() -> None:
    stream = RecordingStream()
    handler = LineHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("pcsgw-test-lines")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)

    async def burst() -> None:
        for index in range(3):
            log_fields(logger, logging.INFO, "line", {"request_id": f"r{index}"})
        assert stream.flushed == ""  # written, not yet flushed within the round
        await asyncio.sleep(0)
        assert stream.flushed.count("\n") == 3

    asyncio.run(burst())
    log_fields(logger, logging.INFO, "line", {"request_id": "outside"})
    assert stream.flushed == stream.text
    lines = [json.loads(line) for line in stream.text.splitlines()]
    assert [line["request_id"] for line in lines] == ["r0", "r1", "r2", "outside"]
    assert lines[0]["logger"] == "pcsgw-test-lines" and lines[0]["message"] == "line"
    log_fields(logger, logging.DEBUG, "below the level", {"request_id": "quiet"})
    assert "quiet" not in stream.text

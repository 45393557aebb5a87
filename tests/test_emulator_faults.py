"""The emulator's faults, as a frontend developer or a test sets them: at start or at run time."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from gateway.emulator.app import FAULTS_VARIABLE, create_emulator, error_status
from gateway.emulator.faults import FaultPlanError
from gateway.pcs.client import make_session
from tests.support.servers import Emulator, ServerThread

# The emulator checks a request's SigV4 shape, not its signature.
SIGNED = {
    "authorization": "AWS4-HMAC-SHA256 Credential=AKIDTEST/20260101/us-east-1/pcs/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
    "x-amz-date": "20260101T000000Z",
    "content-type": "application/x-amz-json-1.0",
    "x-amz-target": "AWSParallelComputingService.GetCluster",
}


def get_cluster(url: str, identifier: str) -> httpx.Response:
    """One GetCluster call on the wire, without an SDK in between."""
    body = json.dumps({"clusterIdentifier": identifier})
    return httpx.post(url, headers=SIGNED, content=body, timeout=10)


def error_code(response: httpx.Response) -> str | None:
    if response.status_code == 200:
        return None
    code: str = response.json()["__type"].rsplit("#", 1)[-1]
    return code


@pytest.fixture
def fresh(emulator: Emulator) -> Emulator:
    emulator.reset()
    return emulator


@pytest.fixture
async def pcs(fresh: Emulator) -> AsyncIterator[Any]:
    """The real aioboto3 client on the emulator, without retries."""
    async with make_session().client(
        "pcs",
        endpoint_url=fresh.url,
        region_name="us-east-1",
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="secret",
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    ) as client:
        yield client


@pytest.fixture
def started_with_plan(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An emulator started with a fault plan in its environment."""
    plan = {
        "clusters": {"demo-active": {"error": "ConflictException"}},
        "global": {"latencySeconds": 0.5},
    }
    monkeypatch.setenv(FAULTS_VARIABLE, json.dumps(plan))
    server = ServerThread(create_emulator(), lifespan="off").start()
    try:
        yield server.url
    finally:
        server.stop()


def test_a_plan_given_at_start_applies_from_the_first_call(started_with_plan: str) -> None:
    emulator = Emulator(started_with_plan)
    with ThreadPoolExecutor(1) as pool:
        # demo-full waits out the global latency while demo-active is asked.
        slow = pool.submit(get_cluster, started_with_plan, "demo-full")
        while emulator.in_flight() != ["demo-full"]:
            time.sleep(0.01)
        conflict = get_cluster(started_with_plan, "demo-active")
        assert emulator.in_flight() == ["demo-full"], "a specific fault replaces the global one"
        assert slow.result().status_code == 200
    assert error_code(conflict) == "ConflictException"
    assert conflict.json()["resourceId"] == "demo-active"
    started = time.monotonic()
    assert get_cluster(started_with_plan, "demo-full").status_code == 200
    assert time.monotonic() - started >= 0.5


@pytest.mark.parametrize(
    ("raw", "named"),
    [("{not json", "not JSON"), ('{"global": {"latency": 1}}', "latency")],
)
def test_a_bad_plan_at_start_stops_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, raw: str, named: str
) -> None:
    monkeypatch.setenv(FAULTS_VARIABLE, raw)
    with pytest.raises(FaultPlanError) as refused:
        create_emulator()
    assert str(refused.value).startswith(f"{FAULTS_VARIABLE}: ")
    assert named in str(refused.value)


@pytest.mark.parametrize(
    ("plan", "named"),
    [
        ([], "JSON object"),
        ({"everywhere": {}}, "everywhere"),
        ({"clusters": {"demo-active": {"eror": "ConflictException"}}}, "eror"),
        ({"clusters": {"demo-active": {"error": "<script>"}}}, "error"),
        ({"clusters": {"demo-active": {"error": 5}}}, "error"),
        ({"clusters": {"demo-active": {"latencySeconds": -1}}}, "latencySeconds"),
        ({"clusters": {"demo-active": {"latencySeconds": "1"}}}, "latencySeconds"),
        ({"clusters": {"demo-active": {"malformed": "weird"}}}, "malformed"),
        ({"clusters": {"demo-active": {"reset": "yes"}}}, "reset"),
        ({"clusters": {"demo-active": {"times": 1.5}}}, "times"),
        ({"clusters": {"demo-active": {"retryAfterSeconds": -2}}}, "retryAfterSeconds"),
        ({"rateLimitPerSecond": 0}, "rateLimitPerSecond"),
        ({"clusters": {"demo-active": {"httpStatus": 503}}}, "httpStatus"),
        ({"global": {"error": "InternalServerException", "httpStatus": 200}}, "httpStatus"),
        ({"clusters": ["demo-active"]}, "clusters"),
    ],
)
def test_a_bad_plan_is_refused_with_400_and_the_plan_in_force_stays(
    fresh: Emulator, plan: Any, named: str
) -> None:
    fresh.faults({"clusters": {"demo-full": {"error": "AccessDeniedException"}}})
    response = fresh.http.put("/_emulator/faults", json=plan)
    assert response.status_code == 400
    assert named in response.json()["error"]
    assert error_code(get_cluster(fresh.url, "demo-full")) == "AccessDeniedException"


@pytest.mark.parametrize(
    "code",
    [
        "ResourceNotFoundException",
        "ValidationException",
        "ThrottlingException",
        "ConflictException",
        "AccessDeniedException",
        "InternalServerException",
    ],
)
async def test_each_pcs_exception_can_be_injected_for_any_cluster(
    fresh: Emulator, pcs: Any, code: str
) -> None:
    fresh.faults({"clusters": {"demo-full": {"error": code}}})
    with pytest.raises(ClientError) as raised:
        await pcs.get_cluster(clusterIdentifier="demo-full")
    response = raised.value.response
    assert response["Error"]["Code"] == code
    assert response["ResponseMetadata"]["HTTPStatusCode"] == error_status(code)
    assert response["ResponseMetadata"]["RequestId"]
    await pcs.get_cluster(clusterIdentifier="demo-active")


def test_error_statuses_follow_the_model() -> None:
    # PCS's model gives no status: AWS JSON 1.0 sends 500 for faults, 400 for the rest.
    assert error_status("InternalServerException") == 500
    assert error_status("ThrottlingException") == 400
    assert error_status("ResourceNotFoundException") == 400
    assert error_status("ShinyNewException") == 400


def test_an_error_can_be_sent_with_another_status(fresh: Emulator) -> None:
    fresh.faults({"global": {"error": "ServiceUnavailableException", "httpStatus": 503}})
    response = get_cluster(fresh.url, "demo-active")
    assert response.status_code == 503
    assert error_code(response) == "ServiceUnavailableException"


def test_a_fault_wears_off_after_its_times(fresh: Emulator) -> None:
    fresh.faults({"clusters": {"demo-active": {"error": "InternalServerException", "times": 2}}})
    statuses = [get_cluster(fresh.url, "demo-active").status_code for _ in range(3)]
    assert statuses == [500, 500, 200]


def test_a_global_fault_hits_every_cluster_and_retry_after_is_set_by_the_plan(
    fresh: Emulator,
) -> None:
    fresh.faults({"global": {"error": "ThrottlingException", "retryAfterSeconds": 7}})
    for identifier in ("demo-active", "demo-full", "pcs_demoactive1"):
        response = get_cluster(fresh.url, identifier)
        assert error_code(response) == "ThrottlingException"
        assert response.json()["retryAfterSeconds"] == 7


@pytest.mark.slow
async def test_calls_above_the_rate_are_throttled_as_pcs_does(fresh: Emulator) -> None:
    fresh.faults({"rateLimitPerSecond": 5})
    body = json.dumps({"clusterIdentifier": "demo-active"})
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=10) as client:
        responses = await asyncio.gather(
            *(client.post(fresh.url, headers=SIGNED, content=body) for _ in range(40))
        )
    elapsed = time.monotonic() - started
    passed = [r for r in responses if r.status_code == 200]
    throttled = [r for r in responses if r.status_code != 200]
    # A burst of one second's calls, then the rate.
    assert 5 <= len(passed) <= 5 + 5 * elapsed + 1
    assert throttled
    assert {error_code(r) for r in throttled} == {"ThrottlingException"}
    assert {r.status_code for r in throttled} == {400}
    assert {r.json()["retryAfterSeconds"] for r in throttled} == {1}
    await asyncio.sleep(1.0)
    assert get_cluster(fresh.url, "demo-active").status_code == 200


def test_a_rate_for_one_cluster_throttles_only_that_cluster(fresh: Emulator) -> None:
    fresh.faults({"clusters": {"demo-active": {"rateLimitPerSecond": 1}}})
    first, second = (get_cluster(fresh.url, "demo-active") for _ in range(2))
    assert first.status_code == 200
    assert error_code(second) == "ThrottlingException"
    assert all(get_cluster(fresh.url, "demo-full").status_code == 200 for _ in range(5))


def test_latency_delays_the_answer(fresh: Emulator) -> None:
    fresh.faults({"clusters": {"demo-active": {"latencySeconds": 0.3}}})
    started = time.monotonic()
    assert get_cluster(fresh.url, "demo-active").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_a_reset_cuts_the_connection_mid_answer(fresh: Emulator) -> None:
    fresh.faults({"clusters": {"demo-active": {"reset": True}}})
    with pytest.raises(httpx.RemoteProtocolError):
        get_cluster(fresh.url, "demo-active")
    assert get_cluster(fresh.url, "demo-full").status_code == 200


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("garbage", b"<html><body>502 Bad Gateway</body></html>"),
        ("truncated", b'{"cluster":{"name":"dem'),
        ("empty", b""),
    ],
)
def test_malformed_bodies_arrive_with_http_200(fresh: Emulator, kind: str, body: bytes) -> None:
    fresh.faults({"clusters": {"demo-active": {"malformed": kind}}})
    response = get_cluster(fresh.url, "demo-active")
    assert response.status_code == 200
    assert response.content == body
    assert response.headers["x-amzn-requestid"]


def test_the_call_log_records_every_call_with_its_outcome(fresh: Emulator) -> None:
    fresh.faults({"clusters": {"demo-full": {"reset": True}}})
    answered = get_cluster(fresh.url, "demo-active")
    with pytest.raises(httpx.RemoteProtocolError):
        get_cluster(fresh.url, "demo-full")
    unsigned = httpx.post(fresh.url, headers={"x-amz-target": SIGNED["x-amz-target"]})
    calls = fresh.http.get("/_emulator/calls").json()
    log = calls["log"]
    assert [(e["operation"], e.get("identifier"), e["status"]) for e in log] == [
        ("GetCluster", "demo-active", 200),
        ("GetCluster", "demo-full", "reset"),
        ("GetCluster", None, 403),
    ]
    assert log[0]["requestId"] == answered.headers["x-amzn-requestid"]
    assert log[2]["requestId"] == unsigned.headers["x-amzn-requestid"]
    assert log[0]["at"] <= log[1]["at"] <= log[2]["at"]
    assert calls["GetCluster"] == 2, "refused requests are logged, not counted"
    fresh.faults(None)
    fresh.reset()
    assert fresh.http.get("/_emulator/calls").json()["log"] == []


def test_the_docs_fault_example_is_a_valid_plan(fresh: Emulator) -> None:
    readme = (Path(__file__).resolve().parent.parent / "docs" / "emulator.md").read_text()
    found = re.search(r"_emulator/faults -d '(\{.*?\})'", readme, re.DOTALL)
    assert found is not None
    response = fresh.http.put("/_emulator/faults", content=found.group(1))
    assert response.status_code == 200
    assert error_code(get_cluster(fresh.url, "demo-active")) == "ThrottlingException"

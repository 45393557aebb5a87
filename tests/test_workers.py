"""`pcs-gateway serve --workers 2`: metrics summed over the workers, JSON log lines, no secrets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.gateway import AWS_TEST_ENVIRONMENT
from tests.support.servers import Emulator, free_port

# Each test starts `pcs-gateway serve` with several worker processes.
pytestmark = [pytest.mark.slow]

#: The region label of the region the workers serve (the test environment's AWS_REGION).
EAST = ("region", AWS_TEST_ENVIRONMENT["AWS_REGION"])

API_KEY = "key-sekrit-0a1b2c3d"
BEARER = "tok-sekrit-4e5f6a7b"
QUERY = "query Cluster($i: String!) { cluster(identifier: $i) { name } }"
REQUESTS = [*["demo-active"] * 10, *["error-not-found"] * 5, *["error-internal"] * 5]


class Served:
    """A `serve` process: its URL, its metrics folder, its stderr so far."""

    def __init__(self, url: str, folder: Path, log: Path) -> None:
        self.url = url
        self.folder = folder
        self.log = log

    def lines(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if line.strip()]


@pytest.fixture
def served(emulator: Emulator, tmp_path: Path) -> Iterator[Served]:
    emulator.reset()
    folder = tmp_path / "metrics"
    folder.mkdir()
    # Left by an earlier run: must be cleared at start, or its counts would add up.
    (folder / "counter_999999.db").write_bytes(b"not a metrics file")
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PCS_GATEWAY_")}
    env.update(AWS_TEST_ENVIRONMENT)
    env.update(
        {
            "AWS_ENDPOINT_URL_PCS": emulator.url,
            "PROMETHEUS_MULTIPROC_DIR": str(folder),
            "PCS_GATEWAY_LOG_FORMAT": "json",
            "PCS_GATEWAY_LOG_LEVEL": "debug",
            "PCS_GATEWAY_PCS_MAX_ATTEMPTS": "1",
            # Five failures in a row on one worker would open its breaker: the kernel may
            # give all the failing requests to one worker, and the test counts closed ones.
            "PCS_GATEWAY_BREAKER_FAILURE_THRESHOLD": "100",
        }
    )
    log = tmp_path / "stderr.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--workers", "2", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    served = Served(f"http://127.0.0.1:{port}", folder, log)
    try:
        deadline = time.monotonic() + 60
        while sum('"gateway ready' in line for line in served.lines()) < 2:
            assert process.poll() is None, served.log.read_text()
            assert time.monotonic() < deadline, served.log.read_text()
            time.sleep(0.1)
        yield served
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_two_workers_report_metrics_summed_over_both(served: Served) -> None:
    responses = [
        # A new connection each: the kernel spreads them over the workers.
        httpx.post(
            f"{served.url}/graphql",
            json={"query": QUERY, "variables": {"i": identifier}},
            headers={"x-api-key": API_KEY, "authorization": f"Bearer {BEARER}"},
            timeout=30,
        )
        for identifier in REQUESTS
    ]
    assert [r.status_code for r in responses] == [200] * len(REQUESTS)
    assert not (served.folder / "counter_999999.db").exists()
    pids = {path.stem.rsplit("_", 1)[1] for path in served.folder.glob("counter_*.db")}
    assert len(pids) == 2
    time.sleep(1.5)  # each worker copies its live counters to the folder every second
    # Any worker answers the sums over both, scrape after scrape.
    for _ in range(4):
        samples = scrape(served.url)
        graphql = (("method", "POST"), ("route", "/graphql"), ("status", "200"))
        assert samples[("pcsgw_http_requests_total", graphql)] == len(REQUESTS)
        assert (
            samples[
                (
                    "pcsgw_graphql_operations_total",
                    (("operation", "Cluster"), ("outcome", "success")),
                )
            ]
            == 10
        )
        assert (
            samples[
                (
                    "pcsgw_graphql_operations_total",
                    (("operation", "Cluster"), ("outcome", "partial")),
                )
            ]
            == 10
        )
        # Each worker's breaker is closed: two live workers in that state.
        assert samples[("pcsgw_upstream_breaker_state", (EAST, ("state", "closed")))] == 2
        answered = samples[("pcsgw_answer_cache_hits_total", ())]
        hits = samples[("pcsgw_cache_hits_total", (("backend", "memory"), EAST))]
        negative = samples[("pcsgw_cache_negative_hits_total", (("backend", "memory"), EAST))]
        calls = samples[
            (
                "pcsgw_upstream_calls_total",
                (("operation", "GetCluster"), ("outcome", "success"), EAST),
            )
        ]
        # Each of the 10 successes was a PCS call, a cluster cache hit or an answer cache hit.
        assert calls + hits + answered == 10
        assert 1 <= calls <= 2 and negative <= 4
        assert all("pid" not in dict(labels) for _, labels in samples)


def test_worker_logs_are_json_lines_with_request_ids_and_no_secrets(served: Served) -> None:
    for index, identifier in enumerate(REQUESTS):
        response = httpx.post(
            f"{served.url}/graphql",
            json={"query": QUERY, "variables": {"i": identifier}},
            headers={
                "x-request-id": f"req-{index}",
                "x-api-key": API_KEY,
                "authorization": f"Bearer {BEARER}",
            },
            timeout=30,
        )
        assert response.headers["x-request-id"] == f"req-{index}"
    deadline = time.monotonic() + 10
    while True:
        lines: list[dict[str, Any]] = [json.loads(line) for line in served.lines()]
        requests = [line for line in lines if line["logger"] == "gateway.requests"]
        if len(requests) >= len(REQUESTS) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert sorted(line["request_id"] for line in requests) == sorted(
        f"req-{index}" for index in range(len(REQUESTS))
    )
    failures = [line for line in lines if line["logger"] == "gateway.pcs.client"]
    failing = {f"req-{i}" for i, identifier in enumerate(REQUESTS) if identifier != "demo-active"}
    assert failures and {line["request_id"] for line in failures} <= failing
    text = served.log.read_text()
    for secret in (
        API_KEY,
        BEARER,
        AWS_TEST_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
        AWS_TEST_ENVIRONMENT["AWS_ACCESS_KEY_ID"],
    ):
        assert secret not in text


def test_several_workers_without_a_metrics_folder_stop_start_up_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from gateway.cli import main

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert main(["serve", "--workers", "2"]) == 2
    assert capsys.readouterr().err == (
        "pcs-gateway: PCS_GATEWAY_WORKERS: more than one worker needs PROMETHEUS_MULTIPROC_DIR "
        "(a folder the workers share for /metrics)\n"
    )
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing"))
    assert main(["serve", "--workers", "2"]) == 2
    assert capsys.readouterr().err == (
        "pcs-gateway: PROMETHEUS_MULTIPROC_DIR: not a writable folder\n"
    )

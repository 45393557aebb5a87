"""Hardening of the upstream path: attempts counted as PCS counts them, brownouts, accounts."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Gateway, GatewayFactory
from tests.servers import Emulator

STATUS = 'query { cluster(identifier: "demo-active") { name status } }'


def samples(gateway: Gateway, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of one metric family from /metrics, by their labels."""
    found = {}
    for family in text_string_to_metric_families(gateway.http.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_every_attempt_pcs_receives_is_counted_beside_the_logical_call(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(pcs_max_attempts=3)
    emulator.faults({"clusters": {"demo-active": {"error": "ThrottlingException", "times": 2}}})
    answer = gateway.query(STATUS)
    assert answer == {"data": {"cluster": {"name": "demo-active", "status": "ACTIVE"}}}
    received = emulator.calls()
    assert received == 3
    attempts = samples(gateway, "pcsgw_upstream_attempts_total")
    assert attempts == {
        (("operation", "GetCluster"), ("outcome", "ThrottlingException")): 2.0,
        (("operation", "GetCluster"), ("outcome", "success")): 1.0,
    }
    assert sum(attempts.values()) == received
    calls = samples(gateway, "pcsgw_upstream_calls_total")
    assert calls == {(("operation", "GetCluster"), ("outcome", "success")): 1.0}

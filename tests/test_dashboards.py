"""The Grafana dashboard and the Prometheus alert rules: every metric they read is exported."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.gateway import Gateway, GatewayFactory
from tests.support.servers import Emulator, RedisServer

ROOT = Path(__file__).resolve().parent.parent
OBSERVABILITY = ROOT / "k8s" / "observability"
DASHBOARD = OBSERVABILITY / "grafana-dashboard.json"
RULES = OBSERVABILITY / "prometheus-rules.yaml"
QUERY = "query($id: String!) { cluster(identifier: $id) { name status } }"

#: PromQL words that read like identifiers but are not metrics.
PROMQL_WORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"})
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# An identifier followed by `{`, `[`, a space, `)`, an operator or the end: a metric name.
_NAME = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?=\s*(?:[{\[)\s,<>=!+*/%^-]|$))")


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, labels and keywords left out)."""
    text = _STRINGS.sub('""', expression)
    text = _MATCHERS.sub("{}", text)
    text = _RANGES.sub("[]", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _NAME.finditer(text):
        name = match.group(1)
        following = text[match.end() :].lstrip()
        if following.startswith("(") or name.lower() in PROMQL_WORDS:
            continue
        names.add(name)
    return names


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def rule_groups() -> dict[str, Any]:
    document = yaml.safe_load(RULES.read_text())
    assert document["kind"] == "PrometheusRule"
    spec: dict[str, Any] = document["spec"]
    return spec


def rule_expressions() -> list[str]:
    return [rule["expr"] for group in rule_groups()["groups"] for rule in group["rules"]]


def exported_samples(gateway: Gateway) -> set[str]:
    """The sample names /metrics exports: counters with _total, histograms with _bucket..."""
    response = gateway.http.get("/metrics")
    assert response.status_code == 200
    return {
        sample.name
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metric_names_are_read_from_promql() -> None:
    expression = (
        'histogram_quantile(0.99, sum by (le, route) (rate(a_seconds_bucket{route="/x",'
        ' le=~"0.5|1"}[5m]))) > 2 and on (pod) max without (x) (b_state{state="open"}) == 1'
        " or c_total unless rate(d_total[$__rate_interval]) / clamp_min(e, 1e-9)"
    )
    assert metric_names(expression) == {"a_seconds_bucket", "b_state", "c_total", "d_total", "e"}


def test_every_metric_the_dashboard_and_alerts_read_is_exported(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway()
    # A success (twice: an answer-cache hit), a cluster PCS does not have, a refused document.
    for _ in range(2):
        answer = gateway.query(QUERY, {"id": "demo-active"})
        assert answer["data"]["cluster"]["name"] == "demo-active"
    missing = gateway.query(QUERY, {"id": "no-such-cluster"})
    assert missing["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert "errors" in gateway.query("{ nope }")
    exported = exported_samples(gateway)

    expressions = dashboard_expressions() + rule_expressions()
    read = set().union(*(metric_names(e) for e in expressions))
    assert len(expressions) >= 15
    assert {
        "pcsgw_http_requests_total",
        "pcsgw_http_request_duration_seconds_bucket",
        "pcsgw_upstream_calls_total",
        "pcsgw_upstream_breaker_state",
        "pcsgw_cache_stale_answers_total",
        "pcsgw_answer_cache_hits_total",
        "pcsgw_cache_degraded",
    } <= read
    assert sorted(read - exported) == []
    # Names that look like metrics but are not exported would have been caught.
    assert "pcsgw_http_requests" not in exported


@pytest.mark.redis
def test_the_cache_degraded_gauge_follows_the_store(start_gateway: GatewayFactory) -> None:
    redis_server = RedisServer().start()
    try:
        gateway = start_gateway(cache_url=redis_server.url)
        assert gateway.http.get("/readyz").json()["checks"]["cache"] == "ok"
        assert degraded_value(gateway) == 0.0
    finally:
        redis_server.stop()
    assert gateway.http.get("/readyz").json()["checks"]["cache"] == "degraded"
    assert degraded_value(gateway) == 1.0


def degraded_value(gateway: Gateway) -> float:
    response = gateway.http.get("/metrics")
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "pcsgw_cache_degraded":
                assert sample.labels == {"backend": "redis"}
                return float(sample.value)
    raise AssertionError("pcsgw_cache_degraded is not exported")


def test_the_alert_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: install the Debian package prometheus"
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule_groups()))
    result = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(group["rules"]) for group in rule_groups()["groups"])
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_every_alert_says_how_bad_and_what_happened() -> None:
    for group in rule_groups()["groups"]:
        for rule in group["rules"]:
            assert rule["alert"].startswith("PcsGateway")
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"]
            assert rule["annotations"]["description"]


def test_the_dashboard_is_grafana_json_with_a_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "pcs-gateway"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]

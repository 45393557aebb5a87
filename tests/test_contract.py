"""The contract with frontends and operators: schema file, command line, settings, README."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gateway.config import ENV_PREFIX, Settings, SettingsError, load_settings
from gateway.graphql.schema import export_sdl
from tests.support.servers import Emulator, free_port

ROOT = Path(__file__).parent.parent


def test_schema_file_matches_the_code() -> None:
    committed = (ROOT / "schema" / "schema.graphql").read_text()
    assert committed == export_sdl(), (
        "schema/schema.graphql drifted: run `pcs-gateway export-schema > schema/schema.graphql`"
    )


def test_the_docs_document_every_setting() -> None:
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        from hooks import settings_table
    finally:
        sys.path.remove(str(ROOT / "docs"))
    table = settings_table()
    undocumented = [
        f"{ENV_PREFIX}{name.upper()}"
        for name in Settings.model_fields
        if f"`{ENV_PREFIX}{name.upper()}`" not in table
    ]
    assert undocumented == []
    assert "<!-- settings-table -->" in (ROOT / "docs" / "configuration.md").read_text()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PCS_GATEWAY_PORT", "99999"),
        ("PCS_GATEWAY_CACHE_URL", "ftp://secret-value@host"),
        ("PCS_GATEWAY_CACHE_TTL_SETTLED_SECONDS", "-1"),
        ("PCS_GATEWAY_ENVIRONMENT", "staging"),
    ],
)
def test_a_bad_setting_stops_start_up_with_one_line_naming_it(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert message.startswith(f"{variable}: ")
    assert "\n" not in message
    assert value not in message


def _run_cli(
    *args: str, env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.mark.slow
def test_cli_exits_2_with_one_line_on_a_bad_setting() -> None:
    env = {**os.environ, "PCS_GATEWAY_CACHE_MAX_ENTRIES": "lots"}
    result = _run_cli("serve", env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "pcs-gateway: PCS_GATEWAY_CACHE_MAX_ENTRIES: "
        "Input should be a valid integer, unable to parse string as an integer"
    ]


@pytest.mark.slow
def test_export_schema_prints_the_sdl() -> None:
    result = _run_cli("export-schema", env=dict(os.environ))
    assert result.returncode == 0
    assert result.stdout == export_sdl()


def _wait_for(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {process.communicate()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not become ready")


def _serve(*args: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{url}/readyz", process)
    except BaseException:
        process.kill()
        raise
    return process, url


@pytest.mark.slow
def test_serve_demo_answers_every_field_from_the_built_in_emulator() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PCS_GATEWAY_"))}
    process, url = _serve("--demo", env=env)
    try:
        query = (ROOT / "schema" / "examples" / "cluster-full.graphql").read_text()
        answer = httpx.post(f"{url}/graphql", json={"query": query}, timeout=10).json()
        cluster = answer["data"]["cluster"]
        assert cluster["name"] == "demo-full"
        assert cluster["slurmConfiguration"]["slurmRest"] == {
            "mode": "STANDARD",
            "modeRaw": "STANDARD",
        }
        assert [e["type"] for e in cluster["endpoints"]] == ["SLURMCTLD", "SLURMDBD", "SLURMRESTD"]
        page = httpx.get(f"{url}/graphql", headers={"accept": "text/html"}, timeout=10)
        assert page.status_code == 200
        assert "graphiql" in page.text.lower()
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.mark.slow
def test_serve_answers_from_any_server_speaking_pcs_at_aws_endpoint_url_pcs(
    emulator: Emulator,
) -> None:
    emulator.reset()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCS_GATEWAY_")}
    env |= {"AWS_ENDPOINT_URL_PCS": emulator.url, "AWS_REGION": "eu-west-1"}
    process, url = _serve(env=env)
    try:
        answer = httpx.post(
            f"{url}/graphql",
            json={
                "query": '{ cluster(identifier: "demo-minimal") { name '
                "slurmConfiguration { authKey { secretArn } } endpoints { port } } }"
            },
            timeout=10,
        ).json()
        assert answer == {
            "data": {
                "cluster": {"name": "demo-minimal", "slurmConfiguration": None, "endpoints": []}
            }
        }
        assert emulator.calls() == 1
    finally:
        process.terminate()
        process.wait(timeout=15)

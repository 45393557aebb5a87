"""The production image, built from the Dockerfile with podman and run as Kubernetes would.

The build and the runs take a minute or two; the base image is made once and cached
(see tests/support/podman.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.emulator.seed import demo_clusters
from tests.support.expected import as_received, expected_cluster
from tests.support.gateway import assert_no_leaks
from tests.support.podman import (
    BuiltImage,
    build_image,
    ensure_base_image,
    podman,
    require_engine,
)
from tests.support.servers import free_port

# Builds and runs the image with podman: minutes the first time.
pytestmark = [pytest.mark.slow, pytest.mark.image]

ROOT = Path(__file__).resolve().parent.parent
FULL_QUERY = (ROOT / "schema" / "examples" / "cluster-full.graphql").read_text()
#: What the image sets PCS_GATEWAY_DRAIN_SECONDS to by default (the setting's default).
DRAIN_SECONDS = 15.0
KUBECTL = str(Path(sysconfig.get_path("scripts")) / "kubectl")
PLAYED_KINDS = frozenset({"Deployment", "ConfigMap"})


@pytest.fixture(scope="module")
def image(request: pytest.FixtureRequest) -> BuiltImage:
    require_engine()
    started = time.monotonic()
    ensure_base_image()
    base_seconds = time.monotonic() - started
    built = build_image()
    line = (
        f"image {built.name}: {built.size_mb:.0f} MB, built in {built.build_seconds:.0f} s "
        f"(base image ready in {base_seconds:.0f} s)"
    )
    # Shown in the test output, not only in a failure's captured output.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is not None and reporter is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("\n" + line)
    else:
        print(line)
    return built


def wait_ready(url: str, seconds: float = 90) -> httpx.Response:
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(f"{url}/readyz", timeout=5)
            if last.status_code == 200:
                return last
        except httpx.TransportError as exc:
            last = exc
        time.sleep(0.25)
    raise AssertionError(f"{url}/readyz not 200 within {seconds}s: {last!r}")


def full_cluster(url: str) -> dict[str, Any]:
    response = httpx.post(
        f"{url}/graphql",
        json={"query": FULL_QUERY, "variables": {"identifier": "demo-full"}},
        timeout=30,
    )
    assert response.status_code == 200
    answer: dict[str, Any] = response.json()
    assert_no_leaks(answer)
    assert "errors" not in answer, answer
    return answer


def expected_full() -> dict[str, Any]:
    (wire,) = [c for c in demo_clusters() if c["name"] == "demo-full"]
    return expected_cluster(wire)


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"pcs-gateway-test-{os.getpid()}-{free_port()}"
    try:
        yield name
    finally:
        podman("rm", "--force", "--time", "0", name, check=False)


def test_image_runs_read_only_as_its_user_answers_and_stops_with_0(
    image: BuiltImage, container_name: str
) -> None:
    port = free_port()
    podman(
        "run",
        "--detach",
        "--name",
        container_name,
        "--read-only",
        "--publish",
        f"127.0.0.1:{port}:8000",
        image.name,
        "serve",
        "--demo",
    )
    url = f"http://127.0.0.1:{port}"
    ready = wait_ready(url)
    assert ready.json()["status"] == "ready"
    answer = full_cluster(url)
    assert as_received(answer["data"]["cluster"]) == expected_full()
    # GraphiQL from the assets baked into the image, not from a CDN.
    page = httpx.get(f"{url}/graphql", headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 200
    assert 'src="graphql/assets/' in page.text and "unpkg.com" not in page.text
    (inspected,) = json.loads(podman("container", "inspect", container_name))
    assert inspected["Config"]["User"] == "10001:10001"
    assert podman("exec", container_name, "id", "-u").strip() == "10001"

    started = time.monotonic()
    podman("stop", "--time", str(int(DRAIN_SECONDS + 10)), container_name)
    stopped_after = time.monotonic() - started
    (inspected,) = json.loads(podman("container", "inspect", container_name))
    logs = _logs(container_name)
    assert inspected["State"]["ExitCode"] == 0, logs
    assert stopped_after < DRAIN_SECONDS, logs
    assert "gateway stopped: PCS client and cache closed" in logs


def _logs(name: str) -> str:
    result = subprocess.run(["podman", "logs", name], capture_output=True, text=True, check=False)
    return result.stdout + result.stderr


def test_image_holds_no_compiler_cache_or_installer(image: BuiltImage) -> None:
    probe = (
        "import json, os, shutil; print(json.dumps({"
        "'tools': [t for t in ('gcc', 'cc', 'make', 'pip', 'pip3') if shutil.which(t)], "
        "'caches': [p for p in ('/root/.cache', '/tmp/pip-cache') if os.path.exists(p)], "
        "'env': {k: v for k, v in os.environ.items() if k.startswith(('PYTHON', 'PCS_'))}}))"
    )
    found = json.loads(
        podman("run", "--rm", "--read-only", "--entrypoint", "python3", image.name, "-c", probe)
    )
    assert found["tools"] == []
    assert found["caches"] == []
    assert found["env"]["PYTHONUNBUFFERED"] == "1"
    assert found["env"]["PCS_GATEWAY_GRAPHIQL_ASSETS_DIR"] == "/opt/pcs-gateway/graphiql"
    (inspected,) = json.loads(podman("image", "inspect", image.name))
    config = inspected["Config"]
    assert config["Entrypoint"] == ["pcs-gateway"]
    assert config["Cmd"] == ["serve"]
    assert "Healthcheck" not in config or not config["Healthcheck"]
    assert config["Labels"]["org.opencontainers.image.title"] == "pcs-gateway"


def played_demo(image: str, port: int) -> str:
    """The demo overlay's Deployment and ConfigMap, on the built image and a loopback hostPort."""
    rendered = subprocess.run(
        [KUBECTL, "kustomize", str(ROOT / "k8s" / "overlays" / "demo")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    kept = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] in PLAYED_KINDS]
    assert sorted(d["kind"] for d in kept) == sorted(PLAYED_KINDS)
    for document in kept:
        if document["kind"] == "Deployment":
            (container,) = document["spec"]["template"]["spec"]["containers"]
            container["image"] = image
            (http,) = container["ports"]
            http.update(hostPort=port, hostIP="127.0.0.1")
    return yaml.safe_dump_all(kept)


def test_demo_overlay_plays_with_podman_kube_and_answers(image: BuiltImage, tmp_path: Path) -> None:
    port = free_port()
    manifest = tmp_path / "demo.yaml"
    manifest.write_text(played_demo(image.name, port))
    podman("kube", "play", str(manifest))
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url)
        answer = full_cluster(url)
        assert as_received(answer["data"]["cluster"]) == expected_full()
        pods = json.loads(podman("pod", "ps", "--format", "json"))
        (pod,) = [p for p in pods if p["Name"] == "pcs-gateway-pod-0"]
        # The Deployment's securityContext held: non-root, read-only, no capabilities.
        (gateway,) = [c for c in pod["Containers"] if c["Names"].endswith("-gateway")]
        (inspected,) = json.loads(podman("container", "inspect", gateway["Id"]))
        assert inspected["Config"]["User"].split(":")[0] == "10001"
        assert inspected["HostConfig"]["ReadonlyRootfs"] is True
        assert inspected["EffectiveCaps"] in (None, [])
    finally:
        podman("kube", "down", str(manifest), check=False)
    pods = json.loads(podman("pod", "ps", "--format", "json") or "[]")
    assert all(p["Name"] != "pcs-gateway-pod-0" for p in pods)

"""The documentation: the README stays short, the site builds strictly from the code."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from gateway.config import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = (
    "python3 -m pip install -c requirements.lock -e . && python3 -m gateway serve --demo",
    "python3 tests/run.py",
)
#: Made-up figures in the results format of bench/cached_queries.py, for the build only.
RESULTS: dict[str, Any] = {
    "scenarios": {
        "full": {
            "gateway": {
                "rps": 4321.0,
                "p50_ms": 1.25,
                "p99_ms": 4.5,
                "wrong": 0,
                "errors": 0,
                "rps_vs_apollo": 3.21,
                "rps_vs_mercurius": 1.23,
                "rps_vs_ceiling": 0.61,
            },
            "mercurius": {"rps": 3513.0, "p50_ms": 2.5, "p99_ms": 7.75, "wrong": 0, "errors": 0},
            "apollo": {"rps": 1346.0, "p50_ms": 9.5, "p99_ms": 40.25, "wrong": 0, "errors": 0},
            "ceiling": {"rps": 7084.0, "p50_ms": 0.75, "p99_ms": 3.0, "wrong": 0, "errors": 0},
        }
    },
    "command": "python3 bench/cached_queries.py --scenarios full",
    "machine": "a test machine",
}


def load_hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(site: Path, results: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PCS_GATEWAY_BENCH_RESULTS": str(results), "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )


def test_readme_is_short_and_starts_with_the_quickstart() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert re.search(r"^#+ .*Quickstart", readme, re.MULTILINE)
    for command in QUICKSTART:
        assert command in readme.splitlines(), command


def test_readme_links_to_pages_that_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    pages = re.findall(r"\]\((docs/[^)#]+\.md)", readme)
    assert len(pages) >= 10
    for page in pages:
        assert (ROOT / page).is_file(), page


def test_a_secret_default_is_never_shown() -> None:
    hooks = load_hooks()

    class WithSecret(BaseSettings):
        token: SecretStr | None = Field(SecretStr("hunter2-secret"), description="A token.")
        plain: SecretStr = Field(SecretStr("other-secret"), description="Another.")

    for name, field in WithSecret.model_fields.items():
        shown = hooks.describe_default(name, field)
        assert "secret" not in shown and "hunter2" not in shown
        assert shown == "(hidden)"


@pytest.mark.slow
def test_site_builds_strictly_with_every_setting_and_the_results(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(RESULTS))
    site = tmp_path / "site"
    built = build(site, results)
    assert built.returncode == 0, built.stderr[-3000:]

    configuration = (site / "configuration" / "index.html").read_text()
    listed = re.findall(r"<tr>\s*<td><code>(PCS_GATEWAY_[A-Z_]+)</code></td>", configuration)
    expected = [f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields]
    assert listed == expected
    port = re.search(r"<td><code>PCS_GATEWAY_PORT</code></td>(.*?)</tr>", configuration, re.S)
    assert port is not None and "<code>8000</code>" in port.group(1)

    performance = (site / "performance" / "index.html").read_text()
    chart = re.search(r"<svg [^>]*role=\"img\".*?</svg>", performance, re.S)
    assert chart is not None
    for ratio in ("1.23x", "3.21x", "0.61x"):
        assert ratio in chart.group()
    for figure in ("4,321", "3,513", "1,346", "7,084", "40.25"):
        assert re.search(rf"<td[^>]*>{figure}</td>", performance), figure
    assert "python3 bench/cached_queries.py --scenarios full" in performance


@pytest.mark.slow
def test_site_build_fails_without_benchmark_results(tmp_path: Path) -> None:
    built = build(tmp_path / "site", tmp_path / "missing.json")
    assert built.returncode != 0
    assert "benchmark results not found" in built.stderr
    assert str(tmp_path / "missing.json") in built.stderr

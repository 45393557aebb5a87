"""The import contracts in pyproject.toml (`[tool.importlinter]`) hold, and can break."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sysconfig
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sysconfig.get_path("scripts")) / "lint-imports"
SUMMARY = re.compile(r"^Contracts: (\d+) kept, (\d+) broken\.", re.MULTILINE)


def contracts(root: Path = ROOT) -> list[dict[str, object]]:
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    found: list[dict[str, object]] = config["tool"]["importlinter"]["contracts"]
    return found


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports over the `gateway` package found in `root`, without a graph cache."""
    env = {**os.environ, "PYTHONPATH": str(root), "COLUMNS": "200"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_import_contract_is_checked_and_kept() -> None:
    assert LINT_IMPORTS.exists(), f"{LINT_IMPORTS} is missing: install the dev extra"
    declared = contracts()
    assert {contract["type"] for contract in declared} >= {
        "layers",
        "forbidden",
        "acyclic_siblings",
    }
    run = lint_imports(ROOT)
    summary = SUMMARY.search(run.stdout)
    assert summary is not None, run.stdout + run.stderr
    kept, broken = int(summary[1]), int(summary[2])
    assert (kept, broken) == (len(declared), 0), run.stdout + run.stderr
    assert run.returncode == 0, run.stdout + run.stderr
    # Long names wrap in the report: compare with whitespace folded.
    report = " ".join(run.stdout.split())
    for contract in declared:
        assert f"{contract['name']} KEPT" in report, contract


def test_the_pcs_client_importing_metrics_breaks_the_data_path_contract(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "gateway", tmp_path / "gateway")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / "gateway" / "pcs" / "client.py").open("a", encoding="utf-8") as client:
        client.write("\nfrom gateway.observe.metrics import Metrics  # noqa: E402\n")
    run = lint_imports(tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    summary = SUMMARY.search(run.stdout)
    assert summary is not None, run.stdout + run.stderr
    assert int(summary[2]) >= 1
    data_path = next(c for c in contracts() if c.get("id") == "data-path")
    assert f"{data_path['name']} BROKEN" in " ".join(run.stdout.split()), run.stdout
    assert "gateway.pcs.client -> gateway.observe.metrics" in run.stdout

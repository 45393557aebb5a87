"""The test command: install what the tests need, then lint, type-check and run every test.

    python3 tests/run.py [pytest arguments]

Python packages come from the lock file; the programs the tests drive and the container
engine's settings from tools/machine_setup.py. Then ruff, mypy, the import contracts
(when pyproject.toml declares them), the documentation site's strict build (when
mkdocs.yml exists) and pytest, with the tests that need Redis or the image engine failing
rather than skipping.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.machine_setup import setup_machine  # noqa: E402

# pytest's exit code when it collected no test: a filter or a path that matches nothing.
NO_TESTS_COLLECTED = 5


def run(*args: str) -> None:
    """Run one step; stop the command at its first failure."""
    print("+", " ".join(args), flush=True)
    try:
        result = subprocess.run(args, cwd=ROOT)
    except FileNotFoundError:
        sys.exit(f"tests/run.py: FAILED: {args[0]} is not installed (pip install -e '.[dev]')")
    if result.returncode != 0:
        sys.exit(f"tests/run.py: FAILED ({result.returncode}): {' '.join(args)}")


def verdict(pytest_code: int, steps: list[str], minutes: float) -> tuple[int, str]:
    """The command's exit code and its last line, from pytest's exit code."""
    if pytest_code == NO_TESTS_COLLECTED:
        return 1, "tests/run.py: FAILED: pytest collected no tests (check its arguments)"
    if pytest_code != 0:
        return pytest_code, f"tests/run.py: FAILED: pytest exited with {pytest_code}"
    return 0, f"tests/run.py: passed: {', '.join(steps)} ({minutes:.1f} min)"


def has_import_contracts() -> bool:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return "importlinter" in pyproject.get("tool", {})


def main() -> int:
    started = time.monotonic()
    python = sys.executable
    run(python, "-m", "pip", "install", "-qq", "-c", "requirements.lock", "-e", ".[dev]")
    setup_machine()
    steps = ["ruff", "mypy"]
    run(python, "-m", "ruff", "check", ".")
    run(python, "-m", "ruff", "format", "--check", ".")
    run(python, "-m", "mypy")
    if has_import_contracts():
        run("lint-imports")
        steps.append("import contracts")
    if (ROOT / "mkdocs.yml").exists():
        with tempfile.TemporaryDirectory(prefix="pcs-gateway-site-") as site:
            run(python, "-m", "mkdocs", "build", "--strict", "-q", "-d", site)
        steps.append("docs build")
    env = {**os.environ, "PCS_GATEWAY_TESTS_STRICT": "1"}
    print("+", python, "-m", "pytest", *sys.argv[1:], flush=True)
    code = subprocess.run([python, "-m", "pytest", *sys.argv[1:]], cwd=ROOT, env=env).returncode
    steps.append("pytest")
    exit_code, line = verdict(code, steps, (time.monotonic() - started) / 60)
    print(line, file=sys.stderr if exit_code else sys.stdout, flush=True)
    return exit_code


if __name__ == "__main__":
    raise SystemExit(main())

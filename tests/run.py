"""The test command: install what the tests need, then lint, type-check and run every test.

    python3 tests/run.py [pytest arguments]

Python packages come from the lock file; redis-server (and the other programs the
tests drive) from Debian's packages when missing and the user is root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Program on PATH -> Debian package that provides it. Tests fail, not skip, without them.
DEBIAN_PACKAGES = {"redis-server": "redis-server", "chromium": "chromium"}


def run(*args: str) -> None:
    print("+", " ".join(args), flush=True)
    result = subprocess.run(args, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f"tests/run.py: failed ({result.returncode}): {' '.join(args)}")


def ensure_programs() -> None:
    missing = sorted({pkg for prog, pkg in DEBIAN_PACKAGES.items() if not shutil.which(prog)})
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        sys.exit(
            "tests/run.py: missing programs the tests need: "
            + ", ".join(missing)
            + ". Install these Debian packages (as root: apt-get install "
            + " ".join(missing)
            + ") and run again."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("+ apt-get install", *missing, flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=True,
        env=env,
    )


def main() -> int:
    python = sys.executable
    run(python, "-m", "pip", "install", "-qq", "-c", "requirements.lock", "-e", ".[dev]")
    ensure_programs()
    run(python, "-m", "ruff", "check", ".")
    run(python, "-m", "ruff", "format", "--check", ".")
    run(python, "-m", "mypy")
    env = {**os.environ, "PCS_GATEWAY_TESTS_STRICT": "1"}
    result = subprocess.run([python, "-m", "pytest", *sys.argv[1:]], cwd=ROOT, env=env)
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())

"""The test command: install what the tests need, then lint, type-check and run every test.

    python3 tests/run.py [pytest arguments]

Python packages come from the lock file; redis-server (and the other programs the
tests drive) from Debian's packages when missing and the user is root. The container
engine that builds and runs the image (podman with runc) gets the settings it needs on
these machines in /etc/containers/containers.conf.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Program on PATH -> Debian package that provides it. Tests fail, not skip, without them.
DEBIAN_PACKAGES = {"redis-server": "redis-server", "chromium": "chromium", "promtool": "prometheus"}
# The image test's engine, installed with its recommended packages (netavark, catatonit for
# the pause image of `podman kube play`, ...), as verified on these machines.
CONTAINER_PACKAGES = {"podman": "podman", "debootstrap": "debootstrap", "runc": "runc"}
CONTAINERS_CONF = Path("/etc/containers/containers.conf")
# runc (crun fails here), cgroupfs and a file event log (no systemd), and open-file limits
# under the machine's hard limit (podman's default is above it: runc fails to set rlimits).
CONTAINERS_SETTINGS = {
    "containers": {"default_ulimits": ["nofile=1024:1024", "nproc=1024:1024"]},
    "engine": {"runtime": "runc", "cgroup_manager": "cgroupfs", "events_logger": "file"},
}


def run(*args: str) -> None:
    print("+", " ".join(args), flush=True)
    result = subprocess.run(args, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f"tests/run.py: failed ({result.returncode}): {' '.join(args)}")


def missing_packages(programs: dict[str, str]) -> list[str]:
    return sorted({pkg for prog, pkg in programs.items() if not shutil.which(prog)})


def ensure_programs() -> None:
    missing = missing_packages(DEBIAN_PACKAGES)
    containers = missing_packages(CONTAINER_PACKAGES)
    if not missing and not containers:
        return
    missing += containers
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
    plain = [pkg for pkg in missing if pkg not in containers]
    if plain:
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *plain],
            check=True,
            env=env,
        )
    if containers:
        subprocess.run(["apt-get", "install", "-y", "-qq", *containers], check=True, env=env)


def containers_conf_text() -> str:
    lines = ["# Written by tests/run.py: podman with runc on a machine without systemd."]
    for table, settings in CONTAINERS_SETTINGS.items():
        lines.append(f"[{table}]")
        for key, value in settings.items():
            shown = (
                f'"{value}"'
                if isinstance(value, str)
                else "[" + ", ".join(f'"{item}"' for item in value) + "]"
            )
            lines.append(f"{key} = {shown}")
    return "\n".join(lines) + "\n"


def ensure_containers_conf() -> None:
    """The engine settings of CONTAINERS_SETTINGS, written when absent and the user is root."""
    current: dict[str, Any] = {}
    if CONTAINERS_CONF.exists():
        current = tomllib.loads(CONTAINERS_CONF.read_text())
    wrong = [
        f"[{table}] {key} = {value!r}"
        for table, settings in CONTAINERS_SETTINGS.items()
        for key, value in settings.items()
        if (current.get(table) or {}).get(key) != value
    ]
    if not wrong:
        return
    if os.geteuid() != 0 or (current and not CONTAINERS_CONF.read_text().startswith("# Written")):
        sys.exit(
            f"tests/run.py: the image tests need these settings in {CONTAINERS_CONF}: "
            + "; ".join(wrong)
        )
    print(f"+ write {CONTAINERS_CONF}", flush=True)
    CONTAINERS_CONF.parent.mkdir(parents=True, exist_ok=True)
    CONTAINERS_CONF.write_text(containers_conf_text())


def main() -> int:
    python = sys.executable
    run(python, "-m", "pip", "install", "-qq", "-c", "requirements.lock", "-e", ".[dev]")
    ensure_programs()
    ensure_containers_conf()
    run(python, "-m", "ruff", "check", ".")
    run(python, "-m", "ruff", "format", "--check", ".")
    run(python, "-m", "mypy")
    env = {**os.environ, "PCS_GATEWAY_TESTS_STRICT": "1"}
    result = subprocess.run([python, "-m", "pytest", *sys.argv[1:]], cwd=ROOT, env=env)
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())

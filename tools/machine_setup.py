"""The machine the tests need: Debian programs they drive, and the container engine's settings.

    python3 -m tools.machine_setup

As root with apt-get, installs what is missing (redis-server, chromium, podman with runc and
debootstrap) and writes /etc/containers/containers.conf for podman on a machine without
systemd; as another user, names what to install and stops. The test command calls it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

# Program on PATH -> Debian package that provides it. Tests fail, not skip, without them.
DEBIAN_PACKAGES = {
    "redis-server": "redis-server",
    "chromium": "chromium",
    "promtool": "prometheus",
    "node": "nodejs",
    "npm": "npm",
}
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
# The first line of a containers.conf this tool wrote, and so may rewrite.
WRITTEN_BY = "# Written by tools/machine_setup.py"
WRITTEN_BEFORE = "# Written by tests/run.py"


def missing_packages(programs: dict[str, str]) -> list[str]:
    """The Debian packages of the programs not on PATH."""
    return sorted({pkg for prog, pkg in programs.items() if not shutil.which(prog)})


def ensure_programs() -> None:
    """Install the Debian packages of missing programs, or exit naming them."""
    missing = missing_packages(DEBIAN_PACKAGES)
    containers = missing_packages(CONTAINER_PACKAGES)
    if not missing and not containers:
        return
    missing += containers
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        sys.exit(
            "machine setup: missing programs the tests need: "
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
    """CONTAINERS_SETTINGS as the TOML of containers.conf."""
    lines = [f"{WRITTEN_BY}: podman with runc on a machine without systemd."]
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
    ours = not current or CONTAINERS_CONF.read_text().startswith((WRITTEN_BY, WRITTEN_BEFORE))
    if os.geteuid() != 0 or not ours:
        sys.exit(
            f"machine setup: the image tests need these settings in {CONTAINERS_CONF}: "
            + "; ".join(wrong)
        )
    print(f"+ write {CONTAINERS_CONF}", flush=True)
    CONTAINERS_CONF.parent.mkdir(parents=True, exist_ok=True)
    CONTAINERS_CONF.write_text(containers_conf_text())


def setup_machine() -> None:
    """Everything the tests need of the machine beyond Python packages."""
    ensure_programs()
    ensure_containers_conf()


if __name__ == "__main__":
    setup_machine()

"""The image tests' engine: podman, a local base image made with debootstrap, the build.

No image registry is reachable from these machines, so the official Python base cannot
be pulled: the base is Debian bookworm's minbase with python3, made by debootstrap, kept
as a tarball under CACHE and imported once into podman's storage. The build mounts the
machine's CA bundle over the image's, so pip and the GraphiQL download trust the same
authorities as the host, and nothing of it stays in the image.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STRICT = os.environ.get("PCS_GATEWAY_TESTS_STRICT") == "1"
BASE_IMAGE = "localhost/pcs-gateway-base:bookworm"
IMAGE = "localhost/pcs-gateway:test"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CACHE = Path("/var/cache/pcs-gateway") if os.geteuid() == 0 else Path.home() / ".cache/pcs-gateway"
BASE_TARBALL = CACHE / "bookworm-python3-rootfs.tar"
DEBOOTSTRAP = [
    "debootstrap",
    "--variant=minbase",
    "--include=python3,python3-venv,ca-certificates",
    "bookworm",
]


def unavailable(reason: str) -> None:
    """Fail in CI, where the test command installs the engine; skip elsewhere."""
    if STRICT:
        pytest.fail(f"{reason} (tests/run.py installs it when run as root)")
    pytest.skip(reason)


def podman(*args: str, timeout: float = 600, check: bool = True) -> str:
    """Run podman; its standard output."""
    result = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {result.returncode}\n{result.stderr}")
    return result.stdout


def require_engine() -> None:
    for program in ("podman", "runc", "debootstrap"):
        if shutil.which(program) is None:
            unavailable(f"{program} is not installed")
    if os.geteuid() != 0:
        unavailable("the image tests build a base image with debootstrap, which needs root")


def ensure_base_image() -> None:
    """BASE_IMAGE in podman's storage: imported from the cached tarball, made when absent."""
    if _exists(BASE_IMAGE):
        return
    if not BASE_TARBALL.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as folder:
            rootfs = Path(folder) / "rootfs"
            started = time.monotonic()
            subprocess.run([*DEBOOTSTRAP, str(rootfs)], check=True, capture_output=True)
            # Package downloads and lists stay out of the base: no caches in the image.
            for cached in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for path in (rootfs / cached).glob("*"):
                    if path.is_file():
                        path.unlink()
            partial = BASE_TARBALL.with_suffix(".partial")
            subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True)
            partial.replace(BASE_TARBALL)
            print(f"base rootfs made by debootstrap in {time.monotonic() - started:.0f} s")
    podman("import", str(BASE_TARBALL), BASE_IMAGE)


def _exists(image: str) -> bool:
    return subprocess.run(["podman", "image", "exists", image], capture_output=True).returncode == 0


@dataclass
class BuiltImage:
    """The image the tests built, with what it took."""

    name: str
    size_bytes: int
    build_seconds: float

    @property
    def size_mb(self) -> float:
        return self.size_bytes / 1e6


def build_image() -> BuiltImage:
    """Build the top-level Dockerfile on BASE_IMAGE."""
    started = time.monotonic()
    podman(
        "build",
        "--volume",
        f"{CA_BUNDLE}:{CA_BUNDLE}:ro",
        "--build-arg",
        f"BASE_IMAGE={BASE_IMAGE}",
        "--tag",
        IMAGE,
        str(ROOT),
        timeout=1200,
    )
    seconds = time.monotonic() - started
    # Layers of earlier builds go after a day; recent ones stay as the build cache.
    podman("image", "prune", "--force", "--filter", "until=24h")
    (inspected,) = json.loads(podman("image", "inspect", IMAGE))
    return BuiltImage(IMAGE, int(inspected["Size"]), seconds)

"""What one gateway container uses: memory and CPU of the image under load, for k8s requests.

    python bench/resources.py [--image localhost/pcs-gateway:test] [--seconds 30]

Runs the image (built by tests/test_image.py, or by you) pinned to CPU 0 with host
networking, against the PCS emulator on the host; wrk on CPU 1 sends the full cluster
query over 32 connections, first with the answer cache on (repeated queries, the usual
case), then off (every request parsed, resolved and encoded). It reads the container's
process through /proc: resident memory idle and at its peak, and the cores it used while
loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.servers import free_port

QUERY = (ROOT / "schema" / "examples" / "cluster-full.graphql").read_text()
IDENTIFIERS = ["demo-full", "demo-active", "demo-creating", "demo-minimal"]
LUA = """
local bodies = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", "/graphql", {["Content-Type"] = "application/json"},
                    bodies[(i %% #bodies) + 1])
end
"""


def process_figures(pid: int) -> dict[str, float]:
    """CPU seconds used so far, resident and peak resident memory (MiB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return {
        "cpu_seconds": (int(fields[11]) + int(fields[12])) / ticks,
        "rss": int(status["VmRSS"].split()[0]) / 1024,
        "hwm": int(status["VmHWM"].split()[0]) / 1024,
    }


def run(image: str, seconds: int, answer_cache: bool) -> dict[str, Any]:
    emulator_port, port = free_port(), free_port()
    emulator = subprocess.Popen(
        [sys.executable, "-m", "gateway", "emulator", "--port", str(emulator_port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    name = f"pcs-gateway-resources-{port}"
    env = {
        "AWS_ENDPOINT_URL_PCS": f"http://127.0.0.1:{emulator_port}",
        "AWS_ACCESS_KEY_ID": "AKIDRESOURCES",
        "AWS_SECRET_ACCESS_KEY": "resources-secret",
        "AWS_REGION": "us-east-1",
        "PCS_GATEWAY_PORT": str(port),
        "PCS_GATEWAY_ANSWER_CACHE_MAX_ENTRIES": "10000" if answer_cache else "0",
        "PCS_GATEWAY_PCS_RATE_LIMIT_PER_SECOND": "1000",
    }
    flags = [f"--env={k}={v}" for k, v in env.items()]
    command = ["podman", "run", "--detach", "--name", name, "--read-only", "--network=host"]
    subprocess.run(
        [*command, "--cpuset-cpus=0", *flags, image],
        check=True,
        capture_output=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the gateway did not get ready")
            time.sleep(0.5)
        pid = int(
            subprocess.run(
                ["podman", "inspect", "--format", "{{.State.Pid}}", name],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        time.sleep(3)
        idle = process_figures(pid)
        bodies = ", ".join(
            json.dumps(json.dumps({"query": QUERY, "variables": {"identifier": i}}))
            for i in IDENTIFIERS
        )
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(LUA % bodies)
        started = time.monotonic()
        wrk = subprocess.run(
            ["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{seconds}s", "-s", script.name, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        wall = time.monotonic() - started
        loaded = process_figures(pid)
        os.unlink(script.name)
        rate = next(line for line in wrk.splitlines() if line.startswith("Requests/sec"))
        return {
            "answer cache": answer_cache,
            "idle RSS MiB": round(idle["rss"], 1),
            "peak RSS MiB": round(loaded["hwm"], 1),
            "cores used under load": round((loaded["cpu_seconds"] - idle["cpu_seconds"]) / wall, 2),
            "requests/s": float(rate.split()[-1]),
        }
    finally:
        subprocess.run(["podman", "rm", "--force", "--time", "0", name], capture_output=True)
        emulator.terminate()
        emulator.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="localhost/pcs-gateway:test")
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args()
    for answer_cache in (True, False):
        print(json.dumps(run(args.image, args.seconds, answer_cache)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

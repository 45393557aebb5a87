"""Demo mode: the emulator in the gateway's own process, on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import uvicorn

from gateway.emulator.app import create_emulator
from gateway.emulator.seed import demo_regions

#: The regions the demo emulator holds clusters in; the first is the default.
DEMO_REGIONS = tuple(demo_regions())
DEMO_REGION = DEMO_REGIONS[0]
# The emulator checks that requests are signed, not by whom.
DEMO_CREDENTIALS = {"aws_access_key_id": "demo", "aws_secret_access_key": "demo"}


@contextlib.asynccontextmanager
async def running_emulator(host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve the seeded emulator until the block ends; yields its URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        create_emulator(), log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the demo emulator stopped at start")
            await asyncio.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task
        listener.close()

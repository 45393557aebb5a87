"""ASGI applications the benchmark serves with uvicorn (`--factory`), one per process.

gateway   the gateway in demo mode, settings from PCS_GATEWAY_* variables
upstream  the gateway pointed at a PCS endpoint (AWS_ENDPOINT_URL_PCS), not in demo mode
emulator  the PCS emulator seeded with BENCH_CLUSTERS full clusters named bench-<n>
ceiling   a raw ASGI callable answering the bytes in BENCH_CEILING_BODY: the most any
          Python server on uvicorn could do with the same answer
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from starlette.types import Receive, Scope, Send

from gateway.config import load_settings


def gateway() -> Any:
    """The gateway as `pcs-gateway serve --demo` makes it, logging a line per request."""
    from gateway.app import create_app
    from gateway.observe import logs

    settings = load_settings(demo=True)
    logs.configure(settings)
    return create_app(settings)


def upstream() -> Any:
    """The gateway as `pcs-gateway serve` makes it, against the PCS endpoint it is given."""
    from gateway.app import create_app

    return create_app(load_settings())


def emulator() -> Any:
    """The emulator holding many full clusters, for the memory measurement."""
    from gateway.emulator.app import create_emulator
    from gateway.emulator.seed import full

    count = int(os.environ.get("BENCH_CLUSTERS", "10000"))
    return create_emulator([full(f"bench-{n}") for n in range(count)], faults={})


def ceiling() -> Any:
    """Reads the request, answers the same bytes every time."""
    body = Path(os.environ["BENCH_CEILING_BODY"]).read_bytes()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    start = {"type": "http.response.start", "status": 200, "headers": headers}
    answer = {"type": "http.response.body", "body": body}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        await send(start)
        await send(answer)

    return app

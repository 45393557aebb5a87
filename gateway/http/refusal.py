"""Requests refused before GraphQL runs, answered as GraphQL error documents."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from starlette.types import Send

from gateway.graphql.errors import error_document


async def send_refusal(
    send: Send,
    status: int,
    code: str,
    message: str,
    *,
    headers: Iterable[tuple[bytes, bytes]] = (),
    **extensions: Any,
) -> None:
    """Send one error with `extensions.code` (and any other extensions) under `status`."""
    body = orjson.dumps(error_document(message, code, **extensions))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

"""Page cursors: opaque, signed, and bound to one list of one parent in one region.

A cursor wraps PCS's nextToken of the page it starts, and how many items of that page
come before it. It is signed with an HMAC, so a cursor that was altered, cut short or made
for another list, parent or region is refused before any PCS call, and PCS only ever sees
a token it issued itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import orjson

from gateway.graphql.errors import GatewayError

#: Pages hold 1 to 100 items, as PCS's maxResults does.
MAX_PAGE_SIZE = 100
PAGE_SIZE_MESSAGE = f"first must be from 1 to {MAX_PAGE_SIZE}."
_SIGNATURE_BYTES = 16


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page starts: PCS's token of a page (None: the first) and items to skip in it."""

    token: str | None
    skip: int = 0


class Cursors:
    """Makes and reads the cursors of one gateway (or of every replica sharing the key)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)

    def make(self, listing: str, position: Position) -> str:
        """The cursor of `position` in `listing` (region, list and parent)."""
        body = orjson.dumps({"l": listing, "t": position.token, "s": position.skip})
        signed = body + self._sign(body)
        return base64.urlsafe_b64encode(signed).decode().rstrip("=")

    def read(self, listing: str, cursor: str) -> Position:
        """The position a cursor of `listing` names; GatewayError BAD_USER_INPUT otherwise."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            raise _refused() from None
        body, signature = raw[:-_SIGNATURE_BYTES], raw[-_SIGNATURE_BYTES:]
        if len(raw) <= _SIGNATURE_BYTES or not hmac.compare_digest(signature, self._sign(body)):
            raise _refused()
        data = orjson.loads(body)
        if data.get("l") != listing:
            raise GatewayError(
                "This cursor belongs to another list; pass a cursor of this list's pages.",
                "BAD_USER_INPUT",
            )
        token, skip = data.get("t"), data.get("s")
        if not (token is None or isinstance(token, str)) or not isinstance(skip, int):
            raise _refused()
        return Position(token, skip)

    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:_SIGNATURE_BYTES]


def _refused() -> GatewayError:
    return GatewayError(
        "The cursor is not valid: pass an endCursor or cursor exactly as the gateway sent it.",
        "BAD_USER_INPUT",
    )


def check_first(first: int) -> int:
    """A page size of 1 to 100, else BAD_USER_INPUT."""
    if not 1 <= first <= MAX_PAGE_SIZE:
        raise GatewayError(PAGE_SIZE_MESSAGE, "BAD_USER_INPUT", limit=MAX_PAGE_SIZE)
    return first

"""Page tokens as PCS hands them out: opaque, bound to one listing, and expiring.

A token carries the offset of the next page, the listing it belongs to and when it was
issued, signed with a key only this emulator holds; anything else is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable

#: How long a token stays good, as PCS documents: 24 hours.
DEFAULT_TOKEN_LIFETIME_SECONDS = 86_400.0


class PageTokenError(ValueError):
    """A token that is not this emulator's, was altered, belongs elsewhere or has expired."""


class PageTokens:
    """Issues and reads the nextToken of the list operations."""

    def __init__(self, lifetime_seconds: float, clock: Callable[[], float]) -> None:
        self._key = secrets.token_bytes(32)
        self._lifetime = lifetime_seconds
        self._clock = clock

    def issue(self, listing: str, offset: int) -> str:
        """A token for the page that starts at `offset` of `listing`."""
        payload = json.dumps({"l": listing, "o": offset, "t": self._clock()}).encode()
        body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{body}.{self._sign(body)}"

    def read(self, listing: str, token: str) -> int:
        """The offset a token points at; raises PageTokenError for any token not good here."""
        body, _, signature = token.partition(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            raise PageTokenError("The nextToken is not valid.")
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        if data["l"] != listing:
            raise PageTokenError("The nextToken belongs to another listing.")
        if self._clock() - float(data["t"]) > self._lifetime:
            raise PageTokenError("The nextToken has expired.")
        offset: int = data["o"]
        return offset

    def _sign(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()[:32]

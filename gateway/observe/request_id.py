"""Request ids: the caller's `X-Request-ID` when it is sane, else a new random one."""

from __future__ import annotations

import os
import re

from starlette.types import Scope

REQUEST_ID_HEADER = b"x-request-id"
#: 1 to 128 letters, digits and `._:-`: safe in a log line and a header.
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def new_request_id() -> bytes:
    """A random request id: 32 hexadecimal digits."""
    return os.urandom(16).hex().encode()


def request_id_of(scope: Scope) -> bytes:
    """The request's id: the caller's own if sane, else a new one.

    Read once per request by its first reader (the request log, or the answer cache on a
    hit), which hands it on.
    """
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            if _SANE_REQUEST_ID.fullmatch(value):
                found: bytes = value
                return found
            break
    return new_request_id()

"""The emulator's answers on the wire: AWS JSON 1.0 bodies, errors as PCS shapes them."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.emulator.faults import DEFAULT_RETRY_AFTER_SECONDS
from gateway.pcs.model import load_model

CONTENT_TYPE = "application/x-amz-json-1.0"


@cache
def error_status(code: str) -> int:
    """The HTTP status PCS answers an error with, as the service model defines it.

    AWS JSON 1.0 sends the shape's `error.httpStatusCode` when the model has one, else 500
    for faults (server errors) and 400 for everything else; PCS's model sets none.
    """
    shape = load_model()["shapes"].get(code, {})
    status = shape.get("error", {}).get("httpStatusCode")
    if isinstance(status, int):
        return status
    return 500 if shape.get("fault") else 400


@dataclass(frozen=True)
class Subject:
    """What a call is about, for the members of an error: the operation and what it names."""

    operation: str = "GetCluster"
    identifier: str | None = None
    resource_type: str = "cluster"
    field: str = "clusterIdentifier"


def error_body(
    code: str,
    subject: Subject,
    retry_after: int = DEFAULT_RETRY_AFTER_SECONDS,
    message: str | None = None,
) -> dict[str, Any]:
    """An error as PCS sends it, with the members its shape requires."""
    body: dict[str, Any] = {"__type": f"com.amazonaws.pcs#{code}"}
    identifier = subject.identifier
    if code == "ValidationException":
        body |= {
            "message": message
            or f"1 validation error detected: {subject.field} failed the pattern",
            "reason": "fieldValidationFailed",
            "fieldList": [
                {"name": subject.field, "message": message or "does not match the pattern"}
            ],
        }
    elif code in ("ResourceNotFoundException", "ConflictException"):
        kind = subject.resource_type[0].upper() + subject.resource_type[1:]
        body |= {
            "message": f"{kind} {identifier} "
            + ("not found" if code == "ResourceNotFoundException" else "is being modified"),
            "resourceId": identifier or "",
            "resourceType": subject.resource_type,
        }
    elif code == "ThrottlingException":
        body |= {"message": "Rate exceeded", "retryAfterSeconds": retry_after}
    elif code == "AccessDeniedException":
        body["message"] = f"User is not authorized to perform: pcs:{subject.operation}"
    else:
        body["message"] = "An internal error occurred."
    return body


def answer(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    """A JSON 1.0 answer with a fresh request id."""
    content = json.dumps(body, separators=(",", ":")).encode()
    all_headers = {"x-amzn-RequestId": str(uuid.uuid4())} | (headers or {})
    return Response(content, status_code=status, media_type=CONTENT_TYPE, headers=all_headers)


def error(
    code: str,
    subject: Subject | None = None,
    retry_after: int = DEFAULT_RETRY_AFTER_SECONDS,
    status: int | None = None,
    message: str | None = None,
) -> Response:
    """An error answer, with the status the model implies unless `status` says otherwise."""
    body = error_body(code, subject or Subject(), retry_after, message)
    return answer(status or error_status(code), body)


class Reset(Response):
    """An answer cut off mid-body: the client sees the connection drop."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", CONTENT_TYPE.encode()), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"cluster":', "more_body": True})
        # Returning with the body unfinished makes the server drop the connection.


def malformed(kind: str) -> Response:
    """A 200 whose body is not the JSON PCS would send."""
    body = {
        "garbage": b"<html><body>502 Bad Gateway</body></html>",
        "truncated": b'{"cluster":{"name":"dem',
        "empty": b"",
    }[kind]
    return Response(
        body,
        status_code=200,
        media_type=CONTENT_TYPE,
        headers={"x-amzn-RequestId": str(uuid.uuid4())},
    )

"""What may reach the GraphQL endpoint over HTTP: its methods and its content type.

GraphQL over HTTP needs GET and POST with `application/json` bodies; anything else is
refused with a GraphQL error document before Strawberry sees it (a form post or a text/plain
body, which browsers send cross-site without a preflight, never runs an operation).
WebSocket origins are checked by Strawberry's view against the same allowlist as CORS.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.http.refusal import send_refusal

#: Media types a POST body to /graphql may have.
BODY_TYPES = frozenset({b"application/json"})


class AdmissionMiddleware:
    """Refuses methods and body types GraphQL over HTTP does not need."""

    def __init__(self, app: ASGIApp, *, path: str = "/graphql") -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self.path:
            method = scope["method"]
            if method not in ("GET", "HEAD", "POST"):
                await send_refusal(
                    send,
                    405,
                    "METHOD_NOT_ALLOWED",
                    "GraphQL is served over GET and POST.",
                    headers=[(b"allow", b"GET, POST")],
                )
                return
            if method == "POST" and _media_type(scope) not in BODY_TYPES:
                await send_refusal(
                    send,
                    415,
                    "UNSUPPORTED_MEDIA_TYPE",
                    "POST bodies must be application/json.",
                    headers=[(b"accept-post", b"application/json")],
                )
                return
        await self.app(scope, receive, send)


def _media_type(scope: Scope) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media_type: bytes = value.split(b";", 1)[0].strip().lower()
            return media_type
    return b""

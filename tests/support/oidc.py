"""An identity provider for the tests: a key set the test can rotate, and tokens it signs."""

from __future__ import annotations

import time
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet
from starlette.types import Receive, Scope, Send

from tests.support.servers import ServerThread

ISSUER = "https://idp.example.test/"
AUDIENCE = "pcs-gateway"


class KeySetServer:
    """Serves a JSON Web Key Set the test can rotate, counting fetches."""

    def __init__(self) -> None:
        self.keys: list[ECKey] = []
        self.fetches = 0
        #: When set, the status every fetch gets instead of the keys.
        self.failing: int | None = None
        self.server = ServerThread(self, lifespan="off").start()
        self.url = f"{self.server.url}/jwks.json"

    def new_key(self, kid: str) -> ECKey:
        return ECKey.generate_key("P-256", parameters={"kid": kid, "alg": "ES256", "use": "sig"})

    def publish(self, *keys: ECKey) -> None:
        self.keys = list(keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        self.fetches += 1
        if self.failing is not None:
            await send({"type": "http.response.start", "status": self.failing, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        body = httpx.Response(200, json=KeySet(list(self.keys)).as_dict(private=False)).content
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


def mint(key: ECKey, **claims: Any) -> str:
    """A token signed with `key`, valid for a minute unless the claims say otherwise."""
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 60, **claims}
    body = {name: value for name, value in body.items() if value is not None}
    return jwt.encode({"alg": "ES256", "kid": key.kid}, body, key)


def bearer(token: str) -> dict[str, str]:
    """The headers that present `token`."""
    return {"authorization": f"Bearer {token}"}


def oidc_settings(jwks: KeySetServer, **more: Any) -> dict[str, Any]:
    """Gateway settings that trust tokens of `jwks`'s keys."""
    return {
        "oidc_issuer": ISSUER,
        "oidc_audience": AUDIENCE,
        "oidc_jwks_url": jwks.url,
        "oidc_jwks_min_refresh_seconds": 0.2,
        **more,
    }

"""Authentication: API keys and OIDC bearer tokens, checked before any GraphQL runs.

The fast lane's gate (`gateway.security.gate`) authenticates each request to `/graphql`
in front of the answer cache; this plain ASGI layer inside Starlette refuses what the gate
could not verify (HTTP 401 and an `UNAUTHENTICATED` GraphQL error) and authenticates what
the gate does not see, leaving the verified caller in the request context
(`RequestContext.caller`). It refuses a WebSocket handshake with bad credentials (403). A
browser cannot set headers on a WebSocket, so a handshake without any is accepted and its
credentials are read from graphql-transport-ws's `connection_init` payload
(`InitCredentials`); none valid there closes the socket with 4401 before anything runs.
API keys are held only as SHA-256 digests; tokens are checked by joserfc against the
issuer's key set, fetched once and again on an unknown key id, and a verified token is
remembered by its digest until it expires.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx
import orjson
from joserfc import jwt
from joserfc.errors import ExpiredTokenError
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact
from starlette.datastructures import QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api_keys import ApiKey, parse_api_keys, read_api_keys_file
from gateway.config import Environment, Settings
from gateway.context import Caller, RequestContext
from gateway.http.refusal import send_refusal
from gateway.lru import LRU

log = logging.getLogger(__name__)

#: Asymmetric algorithms only: a key set holds public keys, and `none` or HMAC never verify.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")
#: Paths anyone may reach: probes, metrics, GraphiQL's files.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
PUBLIC_PREFIXES = ("/graphql/assets/",)
#: Query parameters that name an operation: a GET with one of them executes.
OPERATION_PARAMS = ("query", "extensions", "documentId", "id")
#: Largest token read; anything longer is refused without parsing.
MAX_TOKEN_BYTES = 16_384
#: Verified tokens remembered, by digest, until they expire.
MAX_REMEMBERED_TOKENS = 10_000
#: The credential headers; also the keys read from a WebSocket's `connection_init` payload.
CREDENTIAL_HEADERS = (b"authorization", b"x-api-key")
#: graphql-transport-ws's close code for a connection whose caller is not authorized.
UNAUTHORIZED_CLOSE = 4401
#: A WebSocket close reason holds at most 123 bytes (RFC 6455, 5.5).
MAX_CLOSE_REASON = 123


class Unauthenticated(Exception):
    """Missing or bad credentials; the message is fit for the client."""


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def partition_of(may_read_secrets: bool) -> str:
    """The answer partition of callers with this authorization: what field authorization reads.

    Never the principal: every caller allowed the same fields shares the same answers.
    """
    return _digest("partition", "secrets" if may_read_secrets else "")


class KeySetCache:
    """The issuer's signing keys: fetched on first use, again when old or on an unknown kid."""

    def __init__(
        self, url: str, *, max_age: float, min_refresh: float, timeout: float = 5.0
    ) -> None:
        self.url = url
        self.max_age = max_age
        self.min_refresh = min_refresh
        self.timeout = timeout
        self.keys: KeySet | None = None
        self.kids: frozenset[str] = frozenset()
        self.fetched_at = -float("inf")
        self.fetches = 0
        self._lock = asyncio.Lock()

    async def key_set(self, kid: str | None) -> KeySet:
        """Keys holding `kid`, fetching them when missing; Unauthenticated when none can be had."""
        now = time.monotonic()
        stale = now - self.fetched_at > self.max_age
        unknown = kid is not None and kid not in self.kids
        # Never more often than min_refresh, whatever tokens arrive or however the issuer fails.
        if (self.keys is None or stale or unknown) and now - self.fetched_at >= self.min_refresh:
            async with self._lock:
                # Another request may have fetched them while this one waited.
                if time.monotonic() - self.fetched_at >= self.min_refresh:
                    await self._fetch()
        if self.keys is None:
            raise Unauthenticated("The token's signing keys cannot be fetched; retry later.")
        if kid is not None and kid not in self.kids:
            raise Unauthenticated("The bearer token is not valid.")
        return self.keys

    async def _fetch(self) -> None:
        self.fetches += 1
        self.fetched_at = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.get(self.url)
                response.raise_for_status()
                keys = KeySet.import_key_set(orjson.loads(response.content))
        except Exception as exc:  # any failure keeps the keys already held
            log.warning("fetching the OIDC key set failed: %s", type(exc).__name__)
            return
        self.keys = keys
        self.kids = frozenset(key.kid for key in keys if key.kid is not None)


class TokenVerifier:
    """Checks a bearer token: signature, algorithm, issuer, audience, expiry, not-before."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        assert settings.oidc_issuer and settings.oidc_audience and settings.oidc_jwks_url
        self.issuer = settings.oidc_issuer
        self.audience = settings.oidc_audience
        self.leeway = settings.oidc_leeway_seconds
        self.secrets_scope = settings.secrets_scope
        self.keys = KeySetCache(
            settings.oidc_jwks_url,
            max_age=settings.oidc_jwks_max_age_seconds,
            min_refresh=settings.oidc_jwks_min_refresh_seconds,
        )
        self.claims = jwt.JWTClaimsRegistry(
            leeway=self.leeway,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            exp={"essential": True},
            sub={"essential": True},
        )
        self._clock = clock
        # Keyed on the token's digest: the token itself is never held.
        self._verified: LRU[bytes, Caller] = LRU(MAX_REMEMBERED_TOKENS)

    async def verify(self, token: str) -> Caller:
        """The caller a token proves: remembered by its digest once verified, until it expires."""
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthenticated("The bearer token is not valid.")
        digest = hashlib.sha256(token.encode()).digest()
        known = self._verified.get(digest)
        if known is not None:
            assert known.expires_at is not None
            if self._clock() < known.expires_at:
                return known
            self._verified.pop(digest)
        caller = await self._verify(token)
        self._verified.put(digest, caller)
        return caller

    async def _verify(self, token: str) -> Caller:
        try:
            kid = extract_compact(token.encode()).headers().get("kid")
        except Exception:  # whatever does not parse as a JWS is no credential
            raise Unauthenticated("The bearer token is not valid.") from None
        keys = await self.keys.key_set(kid if isinstance(kid, str) else None)
        try:
            decoded = jwt.decode(token, keys, algorithms=list(ALGORITHMS))
            self.claims.validate(decoded.claims)
        except ExpiredTokenError:
            raise Unauthenticated("The bearer token has expired.") from None
        except Exception as exc:  # any failure to verify is a refusal, never a 500
            log.info("bearer token refused: %s", type(exc).__name__)
            raise Unauthenticated("The bearer token is not valid.") from None
        claims = decoded.claims
        scopes = frozenset(_scopes(claims))
        may_read = self.secrets_scope in scopes
        subject = f"oidc:{_digest(self.issuer, str(claims['sub']))}"
        return Caller(
            partition=partition_of(may_read),
            expires_at=float(claims["exp"]),
            subject=subject,
            may_read_secrets=may_read,
            scopes=scopes,
        )


def _scopes(claims: dict[str, Any]) -> Iterable[str]:
    """Scopes and groups a token grants: `scope`/`scp` (space-separated or a list), `groups`."""
    for name in ("scope", "scp", "groups", "roles"):
        value = claims.get(name)
        if isinstance(value, str):
            yield from value.split()
        elif isinstance(value, list):
            yield from (item for item in value if isinstance(item, str))


class Authenticator:
    """The configured ways to authenticate, turning request headers into a Caller."""

    def __init__(self, settings: Settings) -> None:
        self.keys: list[ApiKey] = []
        if settings.api_keys is not None:
            self.keys += parse_api_keys(settings.api_keys.get_secret_value())
        if settings.api_keys_file is not None:
            self.keys += read_api_keys_file(settings.api_keys_file)
        self.secrets_scope = settings.secrets_scope
        # Each key's caller made once: a request finds it by the digest of what it presents.
        self._key_callers = {key.digest: self._caller_of(key) for key in self.keys}
        self.tokens = TokenVerifier(settings) if settings.oidc_issuer else None
        self.required = settings.authentication_configured
        # Without authentication anyone may call; secret references stay hidden in production.
        development = settings.environment is Environment.DEVELOPMENT
        self.anonymous = Caller(
            partition=partition_of(development),
            expires_at=None,
            subject=None,
            may_read_secrets=development,
        )

    def challenge(self) -> bytes:
        """The WWW-Authenticate value naming the schemes this gateway accepts."""
        schemes = []
        if self.tokens is not None:
            schemes.append('Bearer realm="pcs-gateway"')
        if self.keys:
            schemes.append('ApiKey realm="pcs-gateway", header="X-API-Key"')
        return ", ".join(schemes).encode()

    async def authenticate(self, headers: Iterable[tuple[bytes, bytes]]) -> Caller:
        """The caller the headers prove; Unauthenticated when they prove none."""
        authorization = api_key = None
        for name, value in headers:
            if name == b"authorization":
                authorization = value
            elif name == b"x-api-key":
                api_key = value
        if authorization is not None and self.tokens is not None:
            scheme, _, token = authorization.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return await self.tokens.verify(token.strip())
        if api_key is not None and self.keys:
            return self._key_caller(api_key)
        if authorization is not None:
            raise Unauthenticated("The Authorization header is not a bearer token accepted here.")
        raise Unauthenticated(
            "Credentials are required: an API key in X-API-Key or a bearer token in Authorization."
        )

    async def authenticate_payload(self, payload: object) -> Caller:
        """The caller a `connection_init` payload proves, read as the headers would be."""
        return await self.authenticate(payload_credentials(payload).items())

    def _key_caller(self, presented: bytes) -> Caller:
        # A lookup by SHA-256 digest: its timing tells nothing of how close a guess is.
        found = self._key_callers.get(hashlib.sha256(presented.strip()).digest())
        if found is None:
            raise Unauthenticated("The API key is not valid.")
        return found

    def _caller_of(self, key: ApiKey) -> Caller:
        may_read = self.secrets_scope in key.scopes
        return Caller(
            partition=partition_of(may_read),
            expires_at=None,
            subject=f"key:{key.digest.hex()[:16]}",
            may_read_secrets=may_read,
            scopes=key.scopes,
        )


def payload_credentials(payload: object) -> dict[bytes, bytes]:
    """`authorization` and `x-api-key` of a `connection_init` payload, as request headers.

    Keys match in any case, at the top level or inside `headers` (the object graphql-ws users
    pass as `connectionParams`); the top level wins. Values other than strings are ignored.
    """
    found: dict[bytes, bytes] = {}
    if not isinstance(payload, Mapping):
        return found
    nested = payload.get("headers")
    for source in (nested if isinstance(nested, Mapping) else {}, payload):
        for key, value in source.items():
            name = key.lower().encode() if isinstance(key, str) else b""
            if name in CREDENTIAL_HEADERS and isinstance(value, str):
                found[name] = value.encode()
    return found


def has_credentials(scope: Scope) -> bool:
    """Whether the request carries a credential header."""
    return any(name in CREDENTIAL_HEADERS for name, _ in scope["headers"])


class InitCredentials:
    """A WebSocket's caller from its `connection_init` payload, before the server reads it.

    Wraps the socket's receive and send: the first `connection_init` is authenticated before
    it is handed on, so the caller is set before the connection is acknowledged; without
    valid credentials the socket closes with 4401 and the reason, and the server sees the
    peer leave.
    """

    def __init__(self, authenticator: Authenticator, context: RequestContext) -> None:
        self.authenticator = authenticator
        self.context = context
        self.refused = False

    def channels(self, receive: Receive, send: Send) -> tuple[Receive, Send]:
        """The receive and send the server gets for this socket."""

        async def receiving() -> Message:
            message = await receive()
            if self.context.caller is not None or message["type"] != "websocket.receive":
                return message
            payload = _init_payload(message.get("text"))
            if payload is None:
                return message  # not connection_init: the protocol handler answers it
            try:
                self.context.caller = await self.authenticator.authenticate_payload(payload)
            except Unauthenticated as exc:
                self.refused = True
                reason = str(exc).encode()[:MAX_CLOSE_REASON].decode(errors="ignore")
                await send(
                    {"type": "websocket.close", "code": UNAUTHORIZED_CLOSE, "reason": reason}
                )
                return {"type": "websocket.disconnect", "code": UNAUTHORIZED_CLOSE}
            return message

        async def sending(message: Message) -> None:
            if not self.refused:  # closed already: the server's last words go nowhere
                await send(message)

        return receiving, sending


def _init_payload(text: object) -> object | None:
    """The payload of a `connection_init` message ({} when absent), else None."""
    if not isinstance(text, str):
        return None
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(message, dict) or message.get("type") != "connection_init":
        return None
    return message.get("payload") or {}


def is_public(scope: Scope) -> bool:
    """Requests anyone may make: probes, metrics, GraphiQL's page and files."""
    path: str = scope["path"]
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return bool(scope["type"] == "http")
    if path == "/graphql" and scope["type"] == "http" and scope["method"] == "GET":
        # The page itself: a GET that names no operation executes nothing.
        params = QueryParams(scope["query_string"])
        return not any(name in params for name in OPERATION_PARAMS)
    return False


class AuthenticationMiddleware:
    """Verifies each request's caller, or refuses it with 401 (WebSocket: 403 handshake, or
    4401 after a `connection_init` without valid credentials)."""

    def __init__(self, app: ASGIApp, *, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        context = RequestContext.of(scope)
        if context.admission is not None:  # the fast lane's gate has been here
            if context.admission.unauthenticated is not None:
                await self._refuse(scope, send, context.admission.unauthenticated)
                return
            await self.app(scope, receive, send)
            return
        if not self.authenticator.required:
            if context.caller is None:
                context.caller = self.authenticator.anonymous
            await self.app(scope, receive, send)
            return
        if is_public(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket" and not has_credentials(scope):
            init = InitCredentials(self.authenticator, context)
            await self.app(scope, *init.channels(receive, send))
            return
        try:
            caller = await self.authenticator.authenticate(scope["headers"])
        except Unauthenticated as exc:
            await self._refuse(scope, send, str(exc))
            return
        context.caller = caller
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, send: Send, message: str) -> None:
        if scope["type"] == "websocket":
            # Closing before accepting makes the server answer the handshake with 403.
            await send({"type": "websocket.close", "code": 1008})
            return
        await send_refusal(
            send,
            401,
            "UNAUTHENTICATED",
            message,
            headers=[(b"www-authenticate", self.authenticator.challenge())],
        )

"""The security layers in front of the routes, in the order a request meets them."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from gateway.config import Settings
from gateway.http.admission import AdmissionMiddleware
from gateway.security.authentication import AuthenticationMiddleware, Authenticator
from gateway.security.caller_rate_limit import CallerLimit, CallerQuota

#: Request headers a browser page may send cross-origin.
CORS_HEADERS = ["authorization", "content-type", "x-api-key", "x-request-id"]


def security_middleware(settings: Settings, limit: CallerLimit | None = None) -> list[Middleware]:
    """CORS, then methods and origins, then the caller, then the caller's rate limit."""
    return [
        # Credentials travel in headers, never cookies: no credentialed CORS, no `*`.
        Middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allow_origins,
            allow_methods=["GET", "POST"],
            allow_headers=CORS_HEADERS,
            expose_headers=["retry-after", "x-request-id"],
            allow_credentials=False,
            max_age=600,
        ),
        Middleware(AdmissionMiddleware),
        Middleware(AuthenticationMiddleware, authenticator=Authenticator(settings)),
        Middleware(CallerQuota, settings=settings, limit=limit),
    ]

"""The security parts: the fast lane's gate, and the layers in front of the routes in order."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from gateway.config import Settings
from gateway.http.admission import AdmissionMiddleware
from gateway.security.authentication import AuthenticationMiddleware, Authenticator
from gateway.security.caller_rate_limit import CallerLimit, CallerQuota
from gateway.security.gate import SecurityGate

#: Request headers a browser page may send cross-origin.
CORS_HEADERS = ["authorization", "content-type", "x-api-key", "x-request-id"]


class Security:
    """One authenticator and one rate limit, shared by the fast lane's gate and the layers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.authenticator = Authenticator(settings)
        self.rate_limit = CallerLimit(settings)
        self.gate = SecurityGate(self.authenticator, self.rate_limit)

    def middleware(self) -> list[Middleware]:
        """The layers inside Starlette, given the same authenticator and rate limit."""
        return security_middleware(self.settings, self.authenticator, self.rate_limit)


def security_middleware(
    settings: Settings, authenticator: Authenticator, rate_limit: CallerLimit
) -> list[Middleware]:
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
        Middleware(AuthenticationMiddleware, authenticator=authenticator),
        Middleware(CallerQuota, settings=settings, limit=rate_limit),
    ]

"""Field authorization: secret references only for callers allowed to see them."""

from __future__ import annotations

from typing import Any

from strawberry.extensions import FieldExtension
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.types import Info

from gateway.graphql.context import GatewayContext
from gateway.graphql.errors import GatewayError


class CanReadSecrets(BasePermission):
    """The caller holds the configured secrets scope (or authentication is off in development)."""

    message = "Not allowed to see secret references."

    def has_permission(self, source: Any, info: Info[GatewayContext, None], **kwargs: Any) -> bool:
        caller = info.context.caller
        return caller is not None and caller.may_read_secrets

    def on_unauthorized(self) -> None:
        raise GatewayError(self.message, "FORBIDDEN")


def secret_reference() -> list[FieldExtension]:
    """Field extensions of a secret reference: null with FORBIDDEN for other callers."""
    # No schema directive: the SDL stays the contract frontends see.
    return [PermissionExtension([CanReadSecrets()], use_directives=False)]

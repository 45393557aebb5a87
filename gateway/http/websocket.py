"""GraphQL over WebSocket (graphql-transport-ws): each operation scoped as an HTTP request is.

Strawberry makes one context per connection and runs every operation of that connection
with it. The gateway's handler asks the view for a context per operation instead
(`OperationContexts.operation_context`), which checks the caller's credential and spends
the caller's rate limit first, so an operation gets its own deadline and DataLoader, and
a long-lived connection is no second door past authentication or the rate limit. Results
leave in the error contract (`extensions.code`), as over HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, cast

from graphql import GraphQLError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import SubscribeMessage
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.utils.aio import aclosing

from gateway.graphql.context import GatewayContext
from gateway.graphql.errors import to_contract

log = logging.getLogger(__name__)

#: graphql-transport-ws's close code for a connection whose caller is not authorized.
UNAUTHORIZED = 4401


class ConnectionEnds(Exception):
    """The connection must close before the operation runs (the credential has expired)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class OperationRefused(Exception):
    """One operation refused before it runs (over the rate limit); the connection goes on."""

    def __init__(self, error: GraphQLError) -> None:
        super().__init__(error.message)
        self.error = error


class OperationContexts(Protocol):
    """Makes the context of one operation on a connection (the view)."""

    async def operation_context(self, connection: GatewayContext) -> GatewayContext:
        """A fresh context, or ConnectionEnds / OperationRefused."""

    def count_errors(self, errors: list[GraphQLError]) -> None:
        """Count errors sent to the client, as over HTTP."""


class OperationScopedHandler(BaseGraphQLTransportWSHandler[GatewayContext, None]):
    """Strawberry's graphql-transport-ws handler, with a context per operation."""

    @property
    def contexts(self) -> OperationContexts:
        """The view that made this handler: it makes each operation's context."""
        return cast("OperationContexts", self.view)

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        """Strawberry's subscribe, its per-connection limit refused in the error contract."""
        limit = self.max_subscriptions_per_connection
        if (
            self.connection_acknowledged
            and limit is not None
            and message.get("id") not in self.operations
            and len(self.operations) >= limit
        ):
            error = GraphQLError(
                f"A connection may hold at most {limit} subscriptions at once.",
                extensions={"code": "TOO_MANY_SUBSCRIPTIONS", "limit": limit},
            )
            self.contexts.count_errors([error])
            await self.send_message(
                {"id": message["id"], "type": "error", "payload": [error.formatted]}
            )
            return
        await super().handle_subscribe(message)

    async def run_operation(self, operation: Operation[GatewayContext, None]) -> None:
        try:
            context = await self.contexts.operation_context(self.context)
        except ConnectionEnds as exc:
            self.operations.pop(operation.id, None)
            await self.websocket.close(code=exc.code, reason=exc.reason)
            return
        except OperationRefused as exc:
            await self._send_errors(operation, [exc.error], operation.send_initial_errors)
            return
        try:
            source = await self.schema.stream(
                operation.query,
                variable_values=operation.variables,
                context_value=context,
                root_value=self.root_value,
                operation_name=operation.operation_name,
            )
            async with aclosing(source):
                async for result in source:
                    if isinstance(result, PreExecutionError):
                        await self._send_errors(
                            operation, list(result.errors or []), operation.send_initial_errors
                        )
                        return
                    if not isinstance(result, ExecutionResult):  # incremental delivery
                        refusal = GraphQLError("Incremental delivery is not supported here.")
                        await self._send_errors(operation, [refusal], operation.send_initial_errors)
                        return
                    result.errors = self._contract(result.errors or []) or None
                    await operation.send_next(result)
            await operation.send_operation_message({"id": operation.id, "type": "complete"})
        except GraphQLError as unparsed:  # a document that does not parse
            await self._send_errors(operation, [unparsed], operation.send_initial_errors)
        except Exception:  # an operation's failure ends that operation, never the connection
            log.exception("a WebSocket operation failed")
            masked = GraphQLError("Unexpected error.", extensions={"code": "INTERNAL_SERVER_ERROR"})
            await self._send_errors(operation, [masked], operation.send_initial_errors)

    def _contract(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        contract = [to_contract(error) for error in errors]
        self.contexts.count_errors(contract)
        return contract

    async def _send_errors(
        self,
        operation: Operation[GatewayContext, None],
        errors: list[GraphQLError],
        send: Callable[[list[GraphQLError]], Awaitable[None]],
    ) -> None:
        try:
            await send(self._contract(errors))
        except Exception as exc:  # the client has gone: nothing to tell it
            log.debug("a WebSocket error went undelivered: %s", type(exc).__name__)

"""What each GraphQL operation was and how it ended, noted in the request log's record."""

from __future__ import annotations

from collections.abc import Iterator

from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.extensions import SchemaExtension

from gateway.context import OPERATION_NAME, RequestRecord
from gateway.graphql.context import GatewayContext
from gateway.graphql.errors import INTERNAL, REQUEST_ERROR_CODES


class OperationReport(SchemaExtension):
    """Notes the operation's name and type, its outcome and its error codes.

    Outcomes: `success` (no errors), `partial` (data and errors: a field failed), `error`
    (errors and no data), `refused` (the document or its variables failed before execution).
    """

    def on_operation(self) -> Iterator[None]:
        try:
            yield
        except GraphQLError as exc:
            # A document that does not parse is raised through the parser cache.
            self._note_refusal(exc)
            raise
        self._note_result()

    def _record(self) -> RequestRecord | None:
        context = self.execution_context.context
        return context.request_context.record if isinstance(context, GatewayContext) else None

    def _note_refusal(self, exc: GraphQLError) -> None:
        record = self._record()
        if record is not None:
            record.outcome = "refused"
            syntax = isinstance(exc, GraphQLSyntaxError)
            record.error_codes = ["GRAPHQL_PARSE_FAILED" if syntax else "GRAPHQL_VALIDATION_FAILED"]

    def _note_result(self) -> None:
        record = self._record()
        if record is None:
            return
        context = self.execution_context
        name = context.operation_name
        record.operation = name if name is None or OPERATION_NAME.fullmatch(name) else None
        if context.graphql_document is not None:
            try:
                record.operation_type = context.operation_type.value
            except RuntimeError:  # no operation of that name in the document
                record.operation_type = None
        result = context.result
        errors = list(result.errors or []) if result is not None else []
        codes = [str((error.extensions or {}).get("code", INTERNAL)) for error in errors]
        record.error_codes = codes
        data = None if result is None else result.data
        if not errors:
            record.outcome = "success"
        elif data is not None:
            record.outcome = "partial"
        elif all(code in REQUEST_ERROR_CODES for code in codes) or context.graphql_document is None:
            record.outcome = "refused"
        else:
            record.outcome = "error"

"""Operation limits: what one operation may cost, checked before any resolver runs.

Depth, aliases and tokens are Strawberry's own limiters (parse and validation errors); the
lookup limit counts the distinct cluster identifiers an operation asks for (literals,
variables and variable defaults of every `cluster` and `clusters` field it selects, through
fragments) and its largest batch, and refuses the whole operation with `BAD_USER_INPUT`
and the `limit` before execution starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from graphql import (
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    ListValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
    VariableNode,
)
from graphql.validation import (
    ASTValidationRule,
    DeferStreamDirectiveLabel,
    DeferStreamDirectiveOnRootField,
    DeferStreamDirectiveOnValidOperationsRule,
    MaxIntrospectionDepthRule,
    NoSchemaIntrospectionCustomRule,
    StreamDirectiveOnListField,
    specified_rules,
)
from strawberry.extensions import (
    MaxTokensLimiter,
    SchemaExtension,
    max_aliases,
    query_depth_limiter,
)

from gateway.config import Settings

#: Root fields that look clusters up, and the argument holding the identifiers.
LOOKUP_ARGUMENTS = {"cluster": "identifier", "clusters": "identifiers"}


class LookupLimit(SchemaExtension):
    """Refuses an operation with a batch over `max_batch` or over `max_lookups` clusters."""

    def __init__(self, *, max_lookups: int, max_batch: int) -> None:
        self.max_lookups = max_lookups
        self.max_batch = max_batch

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and context.result is None:
            found = Lookups()
            found.collect(document.definitions, context.operation_name, context.variables)
            error = None
            if found.largest_batch > self.max_batch:
                error = GraphQLError(
                    f"A batch may ask for at most {self.max_batch} clusters.",
                    extensions={"code": "BAD_USER_INPUT", "limit": self.max_batch},
                )
            elif len(found.identifiers) > self.max_lookups:
                error = GraphQLError(
                    f"The operation asks for {len(found.identifiers)} distinct clusters; "
                    f"at most {self.max_lookups} are allowed.",
                    extensions={"code": "BAD_USER_INPUT", "limit": self.max_lookups},
                )
            if error is not None:
                # A result set before execution makes Strawberry skip it: no resolver runs.
                context.result = ExecutionResult(data=None, errors=[error])
        yield


class Lookups:
    """The identifiers an operation's lookup fields name, and its largest batch."""

    def __init__(self) -> None:
        self.identifiers: set[str] = set()
        self.largest_batch = 0

    def collect(
        self, definitions: Any, operation_name: str | None, variables: dict[str, Any] | None
    ) -> None:
        """Walk the operation that would run (fragments included, each once)."""
        fragments = {d.name.value: d for d in definitions if isinstance(d, FragmentDefinitionNode)}
        operations = [
            d
            for d in definitions
            if isinstance(d, OperationDefinitionNode)
            and (operation_name is None or (d.name is not None and d.name.value == operation_name))
        ]
        for operation in operations[:1]:
            values = dict(variables or {})
            for definition in operation.variable_definitions or ():
                name = definition.variable.name.value
                if name not in values and definition.default_value is not None:
                    values[name] = _literal(definition.default_value, {})
            self._walk(operation.selection_set, fragments, values, set())

    def _walk(
        self,
        selections: SelectionSetNode,
        fragments: dict[str, FragmentDefinitionNode],
        variables: dict[str, Any],
        seen: set[str],
    ) -> None:
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                argument = LOOKUP_ARGUMENTS.get(selection.name.value)
                for node in selection.arguments or ():
                    if node.name.value == argument:
                        self._add(_literal(node.value, variables))
            elif isinstance(selection, InlineFragmentNode):
                self._walk(selection.selection_set, fragments, variables, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if fragment is not None and name not in seen:
                    seen.add(name)
                    self._walk(fragment.selection_set, fragments, variables, seen)

    def _add(self, value: Any) -> None:
        if isinstance(value, str):
            self.identifiers.add(value)
        elif isinstance(value, list):
            self.largest_batch = max(self.largest_batch, len(value))
            self.identifiers.update(item for item in value if isinstance(item, str))


def _literal(node: ValueNode, variables: dict[str, Any]) -> Any:
    if isinstance(node, VariableNode):
        return variables.get(node.name.value)
    if isinstance(node, StringValueNode):
        return node.value
    if isinstance(node, ListValueNode):
        return [_literal(item, variables) for item in node.values]
    return None


#: Rules about `@defer` and `@stream`: with neither directive in the schema, the rule that
#: refuses unknown directives already refuses every document they would check.
INCREMENTAL_DELIVERY_RULES = frozenset(
    {
        DeferStreamDirectiveLabel,
        DeferStreamDirectiveOnRootField,
        DeferStreamDirectiveOnValidOperationsRule,
        StreamDirectiveOnListField,
    }
)


def validation_rules(settings: Settings) -> list[type[ASTValidationRule]]:
    """graphql-core's rules but those that cannot refuse anything here.

    Each rule visits every node of a new document; one that can never fire is pure cost.
    Without introspection, its depth rule goes too: every introspection field is refused.
    """
    rules = [rule for rule in specified_rules if rule not in INCREMENTAL_DELIVERY_RULES]
    if not settings.introspection_enabled:
        rules.remove(MaxIntrospectionDepthRule)
    return rules


class ValidationRules(SchemaExtension):
    """Sets the operation's whole validation rule set (one tuple, so the cache keys on it)."""

    def __init__(self, rules: tuple[type[ASTValidationRule], ...]) -> None:
        self.rules = rules

    def on_operation(self) -> Iterator[None]:
        self.execution_context.validation_rules = self.rules
        yield


def limit_extensions(settings: Settings) -> list[Callable[[], SchemaExtension]]:
    """The limit extensions the settings ask for, as factories for the schema."""
    # Strawberry's depth and alias limiters, as rule classes made once: the validation
    # cache keys on the rules, so a class made per operation would never hit it.
    rules: list[type[ASTValidationRule]] = [
        *validation_rules(settings),
        query_depth_limiter.create_validator(settings.max_depth, None, None),
        max_aliases.create_validator(settings.max_aliases),
    ]
    if not settings.introspection_enabled:
        rules.append(NoSchemaIntrospectionCustomRule)
    chosen = tuple(rules)
    return [
        lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
        lambda: ValidationRules(chosen),
        lambda: LookupLimit(max_lookups=settings.lookup_limit, max_batch=settings.max_batch_size),
    ]

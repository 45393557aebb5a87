"""Operation limits: what one operation may cost, checked before any resolver runs.

Depth, aliases and tokens are Strawberry's own limiters (parse and validation errors); the
lookup limit counts the distinct cluster identifiers an operation asks for (literals,
variables and variable defaults of every `cluster` and `clusters` field it selects, through
fragments) and its largest batch, and refuses the whole operation with `BAD_USER_INPUT`
and the `limit` before execution starts. Fragment spreads are bounded before validation,
whose rules follow them recursively (and each time they appear): a chain of fragments
deeper than `max_fragment_depth`, more than `max_fragment_spreads` spreads once expanded,
or a fragment that spreads itself, is a validation error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from graphql import (
    DocumentNode,
    ExecutableDefinitionNode,
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
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    SchemaExtension,
    ValidationCache,
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


class FragmentLimitedValidation(ValidationCache):
    """The validation cache, behind a check of the document's fragment spreads."""

    def __init__(self, *, max_depth: int, max_spreads: int, maxsize: int) -> None:
        super().__init__(maxsize=maxsize)
        self.max_depth = max_depth
        self.max_spreads = max_spreads

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        problem = None
        if document is not None:
            problem = fragment_problem(document, self.max_depth, self.max_spreads)
        if problem is None:
            yield from super().on_validate()
            return
        context.pre_execution_errors = [problem]
        yield


def fragment_problem(
    document: DocumentNode, max_depth: int, max_spreads: int
) -> GraphQLError | None:
    """Why the document's fragment spreads are refused, or None; walks without recursion."""
    definitions = [d for d in document.definitions if isinstance(d, ExecutableDefinitionNode)]
    if not any(isinstance(d, FragmentDefinitionNode) for d in definitions):
        return None
    fragments: dict[str, FragmentDefinitionNode] = {}
    for definition in definitions:
        if isinstance(definition, FragmentDefinitionNode):
            fragments.setdefault(definition.name.value, definition)
    spreads = {name: _spreads_in(fragment.selection_set) for name, fragment in fragments.items()}
    # Per fragment: the longest chain of spreads below it, and its spreads once expanded.
    depth: dict[str, int] = {}
    expanded: dict[str, int] = {}
    cap = max_spreads + 1
    for root in fragments:
        if root in depth:
            continue
        stack = [root]
        open_ = {root}
        while stack:
            name = stack[-1]
            pending = [s for s in spreads[name] if s in fragments and s not in depth]
            for child in pending:
                if child in open_:
                    return _refusal(f"Cannot spread fragment '{child}' within itself.", None)
            if pending:
                stack.append(pending[0])
                open_.add(pending[0])
                continue
            known = [s for s in spreads[name] if s in fragments]
            depth[name] = 1 + max((depth[s] for s in known), default=0)
            expanded[name] = min(cap, sum(1 + expanded[s] for s in known))
            open_.discard(stack.pop())
    for definition in definitions:
        known = [s for s in _spreads_in(definition.selection_set) if s in fragments]
        deepest = max((depth[s] for s in known), default=0)
        if deepest > max_depth:
            return _refusal(
                f"Fragments spread fragments {deepest} deep; at most {max_depth} are allowed.",
                max_depth,
            )
        if sum(1 + expanded[s] for s in known) > max_spreads:
            return _refusal(
                f"The operation spreads fragments more than {max_spreads} times once expanded.",
                max_spreads,
            )
    return None


def _spreads_in(selections: SelectionSetNode | None) -> list[str]:
    """Names of the fragments spread in `selections` and the selections below it."""
    found: list[str] = []
    pending: list[SelectionSetNode] = [selections] if selections is not None else []
    while pending:
        for selection in pending.pop().selections:
            if isinstance(selection, FragmentSpreadNode):
                found.append(selection.name.value)
            elif (
                isinstance(selection, FieldNode | InlineFragmentNode)
                and selection.selection_set is not None
            ):
                pending.append(selection.selection_set)
    return found


def _refusal(message: str, limit: int | None) -> GraphQLError:
    extensions: dict[str, object] = {"code": "GRAPHQL_VALIDATION_FAILED"}
    if limit is not None:
        extensions["limit"] = limit
    return GraphQLError(message, extensions=extensions)


def validation_extension(settings: Settings, *, maxsize: int) -> Callable[[], SchemaExtension]:
    """The validation cache with the settings' fragment limits in front of it."""
    return lambda: FragmentLimitedValidation(
        max_depth=settings.max_fragment_depth,
        max_spreads=settings.max_fragment_spreads,
        maxsize=maxsize,
    )


def limit_extensions(settings: Settings) -> list[Callable[[], SchemaExtension]]:
    """The limit extensions the settings ask for, as factories for the schema."""
    # Strawberry's depth and alias limiters, as rule classes made once: the validation
    # cache keys on the rules, so a class made per operation would never hit it.
    rules: list[type[ASTValidationRule]] = [
        query_depth_limiter.create_validator(settings.max_depth, None, None),
        max_aliases.create_validator(settings.max_aliases),
    ]
    if not settings.introspection_enabled:
        rules.append(NoSchemaIntrospectionCustomRule)
    return [
        lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
        lambda: AddValidationRules(rules),
        lambda: LookupLimit(max_lookups=settings.lookup_limit, max_batch=settings.max_batch_size),
    ]

"""Operation limits: what one operation may cost, checked before any resolver runs.

Depth, aliases and tokens are Strawberry's own limiters (parse and validation errors); the
lookup limit counts the distinct cluster identifiers an operation asks for (literals,
variables and variable defaults of every `cluster` and `clusters` field it selects, through
fragments) and its largest batch, and refuses the whole operation with `BAD_USER_INPUT`
and the `limit` before execution starts. The fan-out limit counts the resources an
operation could reach (each page size times the page sizes of the lists around it, summed
over the document, plus its lookups) and refuses it likewise, as it refuses a page size
outside 1 to 100 anywhere in the operation. Fragment spreads are bounded before
validation, whose rules follow them recursively (and each time they appear): a chain of
fragments deeper than `max_fragment_depth`, more than `max_fragment_spreads` spreads once
expanded, or a fragment that spreads itself, is a validation error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from graphql import (
    DocumentNode,
    ExecutableDefinitionNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
    VariableNode,
)
from graphql.type import get_named_type
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
from strawberry import Schema
from strawberry.extensions import (
    MaxTokensLimiter,
    SchemaExtension,
    ValidationCache,
    max_aliases,
    query_depth_limiter,
)

from gateway.config import Settings
from gateway.graphql.cursors import MAX_PAGE_SIZE, PAGE_SIZE_MESSAGE

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
            error = lookup_refusal(
                document,
                context.operation_name,
                context.variables,
                self.max_lookups,
                self.max_batch,
            )
            if error is not None:
                # A result set before execution makes Strawberry skip it: no resolver runs.
                context.result = ExecutionResult(data=None, errors=[error])
        yield


def lookup_refusal(
    document: DocumentNode,
    operation_name: str | None,
    variables: dict[str, Any] | None,
    max_lookups: int,
    max_batch: int,
) -> GraphQLError | None:
    """Why the operation asks for too many clusters, or None."""
    found = Lookups()
    found.collect(document.definitions, operation_name, variables)
    if found.largest_batch > max_batch:
        return GraphQLError(
            f"A batch may ask for at most {max_batch} clusters.",
            extensions={"code": "BAD_USER_INPUT", "limit": max_batch},
        )
    if len(found.identifiers) > max_lookups:
        return GraphQLError(
            f"The operation asks for {len(found.identifiers)} distinct clusters; "
            f"at most {max_lookups} are allowed.",
            extensions={"code": "BAD_USER_INPUT", "limit": max_lookups},
        )
    return None


#: Fields that reach resources, by parent type, and how each multiplies what it reaches: a
#: page by its `first` (the argument's default when absent), a batch by its identifiers, a
#: lookup by one. A queue's node groups are not paged: they count as a full page.
FANOUT_FIELDS: dict[tuple[str, str], str | int] = {
    ("Query", "cluster"): 1,
    ("Query", "clusters"): "identifiers",
    ("Query", "clusterList"): "first",
    ("Query", "queue"): 1,
    ("Query", "computeNodeGroup"): 1,
    ("Cluster", "queues"): "first",
    ("Cluster", "computeNodeGroups"): "first",
    ("Queue", "computeNodeGroups"): MAX_PAGE_SIZE,
    ("Queue", "cluster"): 1,
    ("ComputeNodeGroup", "cluster"): 1,
}


class FanoutLimit(SchemaExtension):
    """Refuses an operation that could reach more than `max_fanout` resources."""

    def __init__(self, *, max_fanout: int) -> None:
        self.max_fanout = max_fanout

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        schema = context.schema
        if document is not None and context.result is None and isinstance(schema, Schema):
            error = fanout_refusal(
                schema._schema, document, context.operation_name, context.variables, self.max_fanout
            )
            if error is not None:
                # As for the lookup limit: a result set before execution skips it.
                context.result = ExecutionResult(data=None, errors=[error])
        yield


def fanout_refusal(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: dict[str, Any] | None,
    max_fanout: int,
) -> GraphQLError | None:
    """Why the operation could reach too many resources (or asks for a bad page), or None."""
    walk = _Fanout.of(schema, document, operation_name, variables)
    if walk.bad_page_size:
        # Refused here too, so that a nested page's size costs no call of the pages
        # around it.
        return GraphQLError(
            PAGE_SIZE_MESSAGE, extensions={"code": "BAD_USER_INPUT", "limit": MAX_PAGE_SIZE}
        )
    if walk.total > max_fanout:
        return GraphQLError(
            f"The operation could reach {walk.total} resources (each page size times "
            "the page sizes of the lists around it, plus its lookups); at most "
            f"{max_fanout} are allowed: ask for smaller pages with first.",
            extensions={"code": "BAD_USER_INPUT", "limit": max_fanout, "fanout": walk.total},
        )
    return None


def fanout(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: dict[str, Any] | None,
) -> int:
    """How many resources the operation that would run could reach, at most."""
    return _Fanout.of(schema, document, operation_name, variables).total


class _Fanout:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDefinitionNode],
        variables: dict[str, Any],
    ) -> None:
        self._schema = schema
        self._fragments = fragments
        self._variables = variables
        self.total = 0
        #: A `first` outside 1 to 100 anywhere in the operation.
        self.bad_page_size = False

    @classmethod
    def of(
        cls,
        schema: GraphQLSchema,
        document: DocumentNode,
        operation_name: str | None,
        variables: dict[str, Any] | None,
    ) -> _Fanout:
        """The walk of the operation that would run."""
        definitions = document.definitions
        operation, values = _operation(definitions, operation_name, variables)
        fragments = {d.name.value: d for d in definitions if isinstance(d, FragmentDefinitionNode)}
        found = cls(schema, fragments, values)
        root = None if operation is None else schema.get_root_type(operation.operation)
        if operation is not None and root is not None:
            found.total = found.walk(operation.selection_set, root, 1, ())
        return found

    def walk(
        self,
        selections: SelectionSetNode,
        parent: GraphQLNamedType,
        factor: int,
        spreading: tuple[str, ...],
    ) -> int:
        """Resources reached below `selections`, each counted `factor` times."""
        total = 0
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                fields = (
                    parent.fields
                    if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType)
                    else {}
                )
                field = fields.get(selection.name.value)
                if field is None:
                    continue
                rule = FANOUT_FIELDS.get((parent.name, selection.name.value))
                here = factor
                if rule is not None:
                    here = factor * self._size(rule, selection, field.args)
                    total += here
                if selection.selection_set is not None:
                    below = get_named_type(field.type)
                    total += self.walk(selection.selection_set, below, here, spreading)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                found = parent if condition is None else self._schema.get_type(condition.name.value)
                if found is not None:
                    total += self.walk(selection.selection_set, found, factor, spreading)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self._fragments.get(name)
                # Each spread counts; a fragment within itself (refused by validation) once.
                if fragment is None or name in spreading:
                    continue
                found = self._schema.get_type(fragment.type_condition.name.value)
                if found is not None:
                    total += self.walk(fragment.selection_set, found, factor, (*spreading, name))
        return total

    def _size(self, rule: str | int, field: FieldNode, arguments: Mapping[str, Any]) -> int:
        if isinstance(rule, int):
            return rule
        value: Any = None
        for node in field.arguments or ():
            if node.name.value == rule:
                value = _literal(node.value, self._variables)
                break
        if value is None and rule in arguments:
            value = arguments[rule].default_value
        if isinstance(value, list):
            return len(value)
        if isinstance(value, str):
            return 1
        if isinstance(value, int) and not isinstance(value, bool):
            if rule == "first" and not 1 <= value <= MAX_PAGE_SIZE:
                self.bad_page_size = True
            return max(0, value)
        return 0


def _operation(
    definitions: Any, operation_name: str | None, variables: dict[str, Any] | None
) -> tuple[OperationDefinitionNode | None, dict[str, Any]]:
    """The operation that would run, and its variables with their defaults filled in."""
    for definition in definitions:
        if isinstance(definition, OperationDefinitionNode) and (
            operation_name is None
            or (definition.name is not None and definition.name.value == operation_name)
        ):
            values = dict(variables or {})
            for each in definition.variable_definitions or ():
                name = each.variable.name.value
                if name not in values and each.default_value is not None:
                    values[name] = _literal(each.default_value, {})
            return definition, values
    return None, {}


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
        operation, values = _operation(definitions, operation_name, variables)
        if operation is not None:
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
    if isinstance(node, IntValueNode):
        return int(node.value)
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
        lambda: FanoutLimit(max_fanout=settings.max_fanout),
    ]

"""A query compiled to closures specialised to its selection set.

`compile_operation` walks a validated document once for one operation and one set of
`@skip`/`@include` decisions, and returns a `Plan`: a closure per field that reads the
value the way its Strawberry resolver does, serialises leaves with the schema's own
types, and propagates nulls and records errors (with their paths and the field's nodes)
as graphql-core does. The root fields (`cluster`, `clusters`) fetch through the cluster
service exactly as the resolvers do. Anything a plan does not cover raises `Unsupported`
with a short, bounded reason, and the operation runs on Strawberry instead.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import orjson
from graphql import (
    ArgumentNode,
    BooleanValueNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    InlineFragmentNode,
    NameNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    Source,
    VariableNode,
    is_leaf_type,
    parse_value,
    print_ast,
)
from graphql.execution.values import VariableValues, get_argument_values
from orjson import Fragment
from strawberry.permission import PermissionExtension
from strawberry.types.field import StrawberryField

from gateway.graphql.ages import cut_ages, join_ages
from gateway.graphql.context import GatewayContext
from gateway.graphql.errors import GatewayError
from gateway.graphql.permissions import CanReadSecrets
from gateway.graphql.resolvers import look_up
from gateway.observe.tracing import span
from gateway.service.clusters import ClusterAnswer
from gateway.service.regions import RegionServices

#: Root fields a plan fetches, with the arguments it knows of each.
ROOT_ARGUMENTS = {
    "cluster": frozenset({"identifier", "refresh", "region"}),
    "clusters": frozenset({"identifiers", "region"}),
}
Path = tuple[str | int, ...]
#: Where in the document a field is: its source and positions, for an error's locations.
#: Plans keep these rather than the field's nodes, which would keep the whole document.
Where = tuple[Source | None, list[int] | None]


def _where(nodes: list[FieldNode]) -> Where:
    positions = [node.loc.start for node in nodes if node.loc is not None]
    first = nodes[0].loc
    return (first.source if first is not None else None), (positions or None)


def _detached(node: FieldNode) -> FieldNode:
    """The field's name and arguments alone, without locations: what reading them needs."""
    arguments = tuple(
        ArgumentNode(
            name=NameNode(value=argument.name.value),
            value=parse_value(print_ast(argument.value), no_location=True),
        )
        for argument in node.arguments or ()
    )
    return FieldNode(name=NameNode(value=node.name.value), arguments=arguments)


class Unsupported(Exception):
    """The operation uses something a plan does not cover; `reason` is a metric label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Null(Exception):
    """A non-null position completed to null: the nearest nullable parent becomes null."""


class Run:
    """One execution of a plan: the request's context and the errors it gathered."""

    __slots__ = ("answers", "context", "errors", "may_read_secrets", "rendered")

    def __init__(self, context: GatewayContext, *, rendered: bool = False) -> None:
        self.context = context
        self.errors: list[GraphQLError] = []
        caller = context.caller
        self.may_read_secrets = caller is not None and caller.may_read_secrets
        #: Whether a cluster's part of the data may be its encoded bytes (`orjson.Fragment`),
        #: rendered once per cluster value: only for whoever encodes the data with orjson.
        self.rendered = rendered
        #: The answers looked up, by (region, identifier): each is looked up once a run.
        self.answers: dict[tuple[str, str], ClusterAnswer] = {}

    def fail(self, exc: Exception, where: Where, path: Path) -> None:
        """Record `exc` at `path`, as graphql-core's `located_error` would."""
        source, positions = where
        try:
            message = str(exc.message)  # type: ignore[attr-defined]
        except AttributeError:
            message = str(exc)
        self.errors.append(GraphQLError(message, None, source, positions, list(path), exc))

    def null(self, message: str, where: Where, path: Path) -> None:
        """Record a null where the schema promises a value."""
        source, positions = where
        self.errors.append(GraphQLError(message, None, source, positions, list(path)))


#: Completes a value at a path: the JSON-ready result, or _Null.
Complete = Callable[[Any, Path, Run], Any]
#: Resolves and completes one field of an object: (source, the object's path, run).
FieldRun = Callable[[Any, Path, Run], Any]
RootRun = Callable[[Run, VariableValues], Awaitable[Any]]
#: Reads a field's value from its source.
Reader = Callable[[Any, Run], Any]


@dataclass(frozen=True, slots=True)
class Plan:
    """One operation compiled for one set of `@skip`/`@include` decisions."""

    roots: tuple[tuple[str, RootRun], ...]

    async def execute(self, run: Run, variables: VariableValues) -> dict[str, Any] | None:
        """The operation's data; the errors are left in `run`."""
        if len(self.roots) == 1:
            values = [await self.roots[0][1](run, variables)]  # no task for a lone field
        else:
            values = await asyncio.gather(*(root(run, variables) for _, root in self.roots))
        data: dict[str, Any] = {}
        for (key, _), value in zip(self.roots, values, strict=True):
            if value is _NULL_ROOT:
                return None  # a non-null root field failed: the whole data is null
            data[key] = value
        return data


_NULL_ROOT = object()
#: An item of `clusters` whose answer the service does not hold: it is looked up.
_NOT_HELD = object()


class Compiler:
    """Compiles operations of one schema; holds what compiling reads of it."""

    def __init__(self, schema: GraphQLSchema) -> None:
        self.schema = schema
        # What compiling learns of a field once (its reader, its guard), for every document.
        self._readers: dict[tuple[str, str], tuple[Callable[[str], Reader], bool]] = {}

    def find(
        self, document: DocumentNode, operation_name: str | None
    ) -> tuple[OperationDefinitionNode, dict[str, FragmentDefinitionNode]]:
        """The query operation that runs, and the document's fragments."""
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if operation_name is not None:
            operations = [o for o in operations if o.name and o.name.value == operation_name]
        if len(operations) != 1:
            raise Unsupported("operation")
        operation = operations[0]
        if operation.operation is not OperationType.QUERY:
            raise Unsupported(operation.operation.value)  # mutation or subscription
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        return operation, fragments

    def conditions(self, document: DocumentNode) -> tuple[str, ...]:
        """The variables `@skip`/`@include` read anywhere in the document."""
        found: list[str] = []
        for definition in document.definitions:
            _condition_variables(definition, found)
        return tuple(dict.fromkeys(found))

    def compile(
        self,
        operation: OperationDefinitionNode,
        fragments: dict[str, FragmentDefinitionNode],
        variables: dict[str, Any],
    ) -> Plan:
        """The plan of `operation` for the `@skip`/`@include` decisions `variables` make."""
        query = self.schema.query_type
        assert query is not None
        collected = _collect(query, [operation.selection_set], fragments, variables)
        roots = []
        for key, nodes in collected.items():
            name = nodes[0].name.value
            if name == "__typename":
                roots.append((key, _constant_root(query.name)))
                continue
            if name.startswith("__"):
                raise Unsupported("introspection")
            known = ROOT_ARGUMENTS.get(name)
            field = query.fields.get(name)
            if known is None or field is None or not set(field.args) <= known:
                raise Unsupported("root_field")
            return_type = field.type
            if name == "cluster":
                item = self._complete(return_type, nodes, fragments, variables, query.name, name)
                roots.append((key, _cluster_root(key, nodes, field, item)))
            else:
                list_type = return_type
                assert isinstance(list_type, GraphQLNonNull)
                inner = list_type.of_type
                assert isinstance(inner, GraphQLList)
                item = self._complete(inner.of_type, nodes, fragments, variables, query.name, name)
                roots.append((key, _clusters_root(key, nodes, field, item)))
        return Plan(tuple(roots))

    def _complete(
        self,
        gql_type: GraphQLOutputType,
        nodes: list[FieldNode],
        fragments: dict[str, FragmentDefinitionNode],
        variables: dict[str, Any],
        parent: str,
        field_name: str,
    ) -> Complete:
        """Completes a resolved non-None value of `gql_type` (None is handled by the caller)."""
        if isinstance(gql_type, GraphQLNonNull):
            return self._complete(gql_type.of_type, nodes, fragments, variables, parent, field_name)
        if isinstance(gql_type, GraphQLList):
            item_type = gql_type.of_type
            item = self._complete(item_type, nodes, fragments, variables, parent, field_name)
            return _list(item, isinstance(item_type, GraphQLNonNull), nodes, parent, field_name)
        if is_leaf_type(gql_type):
            serialize = gql_type.serialize

            def leaf(value: Any, path: Path, run: Run) -> Any:
                return serialize(value)

            return leaf
        if not isinstance(gql_type, GraphQLObjectType):
            raise Unsupported("abstract_type")
        selection_sets = [node.selection_set for node in nodes if node.selection_set is not None]
        collected = _collect(gql_type, selection_sets, fragments, variables)
        fields: list[tuple[str, FieldRun]] = []
        for key, field_nodes in collected.items():
            fields.append((key, self._field(gql_type, key, field_nodes, fragments, variables)))
        return _object(tuple(fields))

    def _field(
        self,
        parent: GraphQLObjectType,
        key: str,
        nodes: list[FieldNode],
        fragments: dict[str, FragmentDefinitionNode],
        variables: dict[str, Any],
    ) -> FieldRun:
        name = nodes[0].name.value
        if name == "__typename":
            type_name = parent.name
            return lambda source, path, run: type_name
        if name.startswith("__"):
            raise Unsupported("introspection")
        field = parent.fields[name]
        if field.args:
            raise Unsupported("arguments")
        known = self._readers.get((parent.name, name))
        if known is None:
            definition = (field.extensions or {}).get("strawberry-definition")
            if not isinstance(definition, StrawberryField):
                raise Unsupported("resolver")
            known = self._readers[parent.name, name] = (
                _resolver(definition, parent.name, name),
                _guarded(definition),
            )
        reader, guarded = known
        resolve = reader(key)
        complete = self._complete(field.type, nodes, fragments, variables, parent.name, name)
        non_null = isinstance(field.type, GraphQLNonNull)
        null_message = f"Cannot return null for non-nullable field {parent.name}.{name}."
        where = _where(nodes)

        def run_field(source: Any, path: Path, run: Run) -> Any:
            if guarded and not run.may_read_secrets:
                run.fail(GatewayError(CanReadSecrets.message, "FORBIDDEN"), where, (*path, key))
                if non_null:
                    raise _Null
                return None
            try:
                value = resolve(source, run)
                if value is None:
                    if non_null:
                        run.null(null_message, where, (*path, key))
                        raise _Null
                    return None
                return complete(value, (*path, key), run)
            except _Null:
                if non_null:
                    raise
                return None
            except Exception as exc:
                run.fail(exc, where, (*path, key))
                if non_null:
                    raise _Null from None
                return None

        return run_field


def _object(fields: tuple[tuple[str, FieldRun], ...]) -> Complete:
    def complete_object(source: Any, path: Path, run: Run) -> dict[str, Any]:
        return {key: field(source, path, run) for key, field in fields}

    return complete_object


def _list(
    item: Complete, non_null_items: bool, nodes: list[FieldNode], parent: str, field_name: str
) -> Complete:
    null_message = f"Cannot return null for non-nullable field {parent}.{field_name}."
    where = _where(nodes)

    def complete_list(values: Any, path: Path, run: Run) -> list[Any]:
        result: list[Any] = []
        for index, value in enumerate(values):
            item_path = (*path, index)
            if value is None:
                if non_null_items:
                    run.null(null_message, where, item_path)
                    raise _Null
                result.append(None)
                continue
            try:
                result.append(item(value, item_path, run))
            except _Null:
                if non_null_items:
                    raise
                result.append(None)
            except Exception as exc:
                run.fail(exc, where, item_path)
                if non_null_items:
                    raise _Null from None
                result.append(None)
        return result

    return complete_list


def _resolver(definition: StrawberryField, parent: str, name: str) -> Callable[[str], Reader]:
    """How a field's value is read from its source, as its Strawberry resolver reads it.

    Returns a factory taking the field's response key (the age is noted under it).
    """
    resolver = definition.base_resolver
    if resolver is None:
        read = attrgetter(definition.python_name)  # Strawberry's default resolver reads so
        reader: Reader = lambda source, run: read(source)  # noqa: E731
        return lambda key: reader
    if resolver.is_async or resolver.arguments:
        raise Unsupported("resolver")
    if resolver.info_parameter is not None:
        if (parent, name) == ("Freshness", "ageSeconds"):
            return _age_seconds
        raise Unsupported("resolver")
    function = resolver.wrapped_func
    if not inspect.isfunction(function):
        raise Unsupported("resolver")
    reserved = {p.name for p in (resolver.self_parameter, resolver.root_parameter) if p}
    parameters = list(inspect.signature(function).parameters)
    if not set(parameters) <= reserved:
        raise Unsupported("resolver")
    if len(parameters) == 2:
        reader = lambda source, run: function(source, source)  # noqa: E731
    elif len(parameters) == 1:
        reader = lambda source, run: function(source)  # noqa: E731
    else:
        reader = lambda source, run: function()  # noqa: E731
    return lambda key: reader


def _age_seconds(key: str) -> Reader:
    def age(root: ClusterAnswer, run: Run) -> float:
        value = round(root.age_seconds(), 3)
        # Noted for the answer cache, which restates it when it reuses the answer.
        run.context.ages.append((key, root.fetched_at, value))
        return value

    return age


def _guarded(definition: StrawberryField) -> bool:
    """Whether the field is a secret reference; Unsupported for any other field extension."""
    guarded = False
    for extension in definition.extensions:
        if not isinstance(extension, PermissionExtension):
            raise Unsupported("field_extension")
        if not all(isinstance(p, CanReadSecrets) for p in extension.permissions):
            raise Unsupported("field_extension")
        guarded = True
    return guarded


def _constant_root(value: str) -> RootRun:
    async def root(run: Run, variables: VariableValues) -> str:
        return value

    return root


def _note(run: Run, answer: ClusterAnswer, path: Path) -> None:
    """What the resolvers note of an answer: its cluster, and a stale mark."""
    context = run.context
    context.note_answer(answer)
    if answer.stale:
        context.volatile = True
        context.stale.append({"path": list(path), "ageSeconds": round(answer.age_seconds(), 3)})


def _resolver_span(context: GatewayContext, field: str, path: Path, identifier: str) -> Any:
    tracer = context.tracer
    if tracer is None:
        return span(None, "")
    return span(
        tracer,
        f"Query.{field}",
        attributes={
            "graphql.field.name": field,
            "graphql.field.path": ".".join(str(part) for part in path),
            "aws.pcs.cluster_identifier": identifier,
        },
    )


def _complete_root_item(item: Complete, answer: ClusterAnswer, path: Path, run: Run) -> Any:
    """A cluster's part of the data: completed, or its rendering when the run takes one."""
    if run.rendered:
        rendered = answer.derived.get((item, run.may_read_secrets))
        if rendered is None:
            rendered = _render(item, answer, path, run)
        if rendered is not None:
            return rendered.replay(answer, path, run)
    try:
        return item(answer, path, run)
    except _Null:
        return None


#: Renderings kept per cluster value: one per plan and secrets scope that reads it.
MAX_RENDERINGS = 8


@dataclass(frozen=True, slots=True)
class _Rendering:
    """A cluster's part of the data, encoded once for one plan, cut where its ages go."""

    #: The encoded part, cut around each age: parts[0] age parts[1] age ... parts[n].
    parts: tuple[bytes, ...]
    #: The response keys of the ages, as the answer cache learns them.
    age_keys: tuple[str, ...]
    #: Errors the part holds, with their paths below the part's own.
    errors: tuple[tuple[GraphQLError, Path], ...]
    #: The part completed to null (a non-null field in it failed).
    null: bool

    def replay(self, answer: ClusterAnswer, path: Path, run: Run) -> Fragment | None:
        """The part for this request: its ages restated, its errors noted at `path`."""
        for error, below in self.errors:
            run.errors.append(
                GraphQLError(
                    error.message,
                    None,
                    error.source,
                    error.positions,
                    [*path, *below],
                    error.original_error,
                )
            )
        if self.null:
            return None
        if not self.age_keys:
            return Fragment(self.parts[0])
        age = answer.age_seconds()
        ages = run.context.ages
        fetched_at, value = answer.fetched_at, round(age, 3)
        for key in self.age_keys:
            ages.append((key, fetched_at, value))
        return Fragment(join_ages(self.parts, [age] * len(self.age_keys)))


def _render(item: Complete, answer: ClusterAnswer, path: Path, run: Run) -> _Rendering | None:
    """Complete the part once, encode it and keep it with the answer; None: it cannot be
    kept (its ages cannot be told apart in the bytes), and nothing of it is noted."""
    errors, ages = run.errors, run.context.ages
    first_error, first_age = len(errors), len(ages)
    null = False
    try:
        data = item(answer, path, run)
    except _Null:
        data, null = None, True
    # Taken back: the replay notes them, as for every later request (or, when the part
    # cannot be kept, its completion again, as for a run without renderings).
    found, noted = ages[first_age:], errors[first_error:]
    del errors[first_error:]
    del ages[first_age:]
    cut = cut_ages(orjson.dumps(data), found)
    if cut is None:
        return None
    depth = len(path)
    rendering = _Rendering(
        parts=cut[0],
        age_keys=tuple(key for key, _, _ in found),
        errors=tuple((error, tuple(error.path or ())[depth:]) for error in noted),
        null=null,
    )
    derived = answer.derived
    if len(derived) >= MAX_RENDERINGS:
        derived.clear()
    derived[item, run.may_read_secrets] = rendering
    return rendering


def _arguments(field: Any, node: FieldNode) -> Callable[[VariableValues], dict[str, Any]]:
    """The field's arguments for the variables; the last ones read are kept, as the fast
    lane hands the same coerced variables to every request that sends the same values."""
    last: list[Any] = [None, None]

    def arguments(variables: VariableValues) -> dict[str, Any]:
        if last[0] is not variables:
            last[1] = get_argument_values(field, node, variables)
            last[0] = variables
        values: dict[str, Any] = last[1]
        return values

    return arguments


def _held(run: Run, services: RegionServices, identifier: str) -> ClusterAnswer | None:
    """The answer of this run or the one the service holds, found without waiting."""
    answer = run.answers.get((services.name, identifier))
    if answer is None:
        answer = services.clusters.held(identifier)
        if answer is not None:
            run.answers[services.name, identifier] = answer
    return answer


async def _look_up(
    run: Run, services: RegionServices, identifier: str, refresh: bool
) -> ClusterAnswer:
    """The answer, asked of the service as the resolvers ask (through the request's loader)."""
    answer = await look_up(run.context, services, identifier, refresh=refresh)
    if not refresh:
        run.answers[services.name, identifier] = answer
    return answer


def _cluster_root(key: str, nodes: list[FieldNode], field: Any, item: Complete) -> RootRun:
    path: Path = (key,)
    where = _where(nodes)
    arguments_of = _arguments(field, _detached(nodes[0]))

    async def root(run: Run, variables: VariableValues) -> Any:
        context = run.context
        try:
            arguments = arguments_of(variables)
            identifier: str = arguments["identifier"]
            services = context.regions.get(arguments.get("region"))  # unserved: fails here
            refresh = bool(arguments.get("refresh", False))
            with _resolver_span(context, "cluster", path, identifier):
                answer = None if refresh else _held(run, services, identifier)
                if answer is None:
                    answer = await _look_up(run, services, identifier, refresh)
            _note(run, answer, path)
        except Exception as exc:
            run.fail(exc, where, path)
            return None
        return _complete_root_item(item, answer, path, run)

    return root


def _clusters_root(key: str, nodes: list[FieldNode], field: Any, item: Complete) -> RootRun:
    where = _where(nodes)
    arguments_of = _arguments(field, _detached(nodes[0]))

    async def root(run: Run, variables: VariableValues) -> Any:
        context = run.context
        try:
            arguments = arguments_of(variables)
            identifiers: list[str] = arguments["identifiers"]
            limit = context.settings.max_batch_size
            if len(identifiers) > limit:
                raise GatewayError(
                    f"A batch may ask for at most {limit} clusters.", "BAD_USER_INPUT", limit=limit
                )
            services = context.regions.get(arguments.get("region"))
        except Exception as exc:
            run.fail(exc, where, (key,))
            return _NULL_ROOT  # `clusters` is non-null: the data is null

        def held(index: int, identifier: str) -> Any:
            path: Path = (key, index)
            with _resolver_span(context, "clusters", path, identifier):
                answer = _held(run, services, identifier)
            if answer is None:
                return _NOT_HELD
            _note(run, answer, path)
            return _complete_root_item(item, answer, path, run)

        async def one(index: int, identifier: str) -> Any:
            path: Path = (key, index)
            try:
                with _resolver_span(context, "clusters", path, identifier):
                    answer = await _look_up(run, services, identifier, False)
                _note(run, answer, path)
            except Exception as exc:
                run.fail(exc, where, path)
                return None
            return _complete_root_item(item, answer, path, run)

        # The items held answer at once; the others are looked up side by side.
        values = [held(index, identifier) for index, identifier in enumerate(identifiers)]
        waiting = [index for index, value in enumerate(values) if value is _NOT_HELD]
        if waiting:
            looked_up = await asyncio.gather(*(one(i, identifiers[i]) for i in waiting))
            for index, value in zip(waiting, looked_up, strict=True):
                values[index] = value
        return values

    return root


def _included(
    node: FieldNode | InlineFragmentNode | FragmentSpreadNode, variables: dict[str, Any]
) -> bool:
    for directive in node.directives or ():
        name = directive.name.value
        if name not in ("skip", "include"):
            raise Unsupported("directive")
        (argument,) = directive.arguments or ()
        value_node = argument.value
        value: object
        if isinstance(value_node, BooleanValueNode):
            value = value_node.value
        elif isinstance(value_node, VariableNode):
            value = variables.get(value_node.name.value)
        else:
            raise Unsupported("directive")
        if (name == "skip" and value is True) or (name == "include" and value is not True):
            return False
    return True


def _collect(
    parent: GraphQLObjectType,
    selection_sets: list[SelectionSetNode],
    fragments: dict[str, FragmentDefinitionNode],
    variables: dict[str, Any],
) -> dict[str, list[FieldNode]]:
    """The fields selected on `parent`, by response key, in the order graphql-core collects."""
    collected: dict[str, list[FieldNode]] = {}
    visited: set[str] = set()

    def walk(selection_set: SelectionSetNode) -> None:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if _included(selection, variables):
                    key = selection.alias.value if selection.alias else selection.name.value
                    collected.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                if not _included(selection, variables) or not _applies(
                    selection.type_condition, parent
                ):
                    continue
                walk(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in visited or not _included(selection, variables):
                    continue
                visited.add(name)
                fragment = fragments[name]
                if _applies(fragment.type_condition, parent):
                    walk(fragment.selection_set)

    for selection_set in selection_sets:
        walk(selection_set)
    return collected


def _applies(condition: Any, parent: GraphQLObjectType) -> bool:
    if condition is None:
        return True
    # The schema has object types only; validation has checked the condition names one.
    return bool(condition.name.value == parent.name)


def _condition_variables(node: Any, found: list[str]) -> None:
    """Names of the variables `@skip`/`@include` read anywhere under `node`."""
    for directive in getattr(node, "directives", None) or ():
        for argument in directive.arguments or ():
            if isinstance(argument.value, VariableNode):
                found.append(argument.value.name.value)
    selection_set = getattr(node, "selection_set", None)
    if selection_set is not None:
        for selection in selection_set.selections:
            _condition_variables(selection, found)

"""The bounded store of compiled plans, and the schema extension that runs them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLSchema,
    OperationDefinitionNode,
    parse,
)
from graphql.execution.values import VariableValues, get_variable_values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from strawberry.extensions import SchemaExtension

from gateway.graphql.compiler.plan import Compiler, Plan, Run, Unsupported
from gateway.graphql.context import GatewayContext
from gateway.lru import LRU

#: Plans kept per document for different `@skip`/`@include` decisions.
MAX_DECISIONS = 16
#: A document seen once: Strawberry runs it, and it is compiled if it comes again.
_FIRST_SIGHT = "new_document"


@dataclass(slots=True)
class CompiledOperation:
    """A document's plans, and the document itself for the fast lane (which parses nothing)."""

    #: The store's key: (document, operation name).
    key: tuple[str, str | None]
    #: The document parsed again without locations (half the memory, no tokens kept),
    #: for what the lane reads: the variables' definitions and the operation limits.
    document: DocumentNode
    #: The operation that runs, in `document`.
    operation: OperationDefinitionNode
    #: Variables `@skip`/`@include` read: their values pick the plan.
    conditions: tuple[str, ...]
    plans: dict[tuple[Any, ...], Plan] = field(default_factory=dict)
    #: Variables the fast lane has coerced and the operation limits let through, by the
    #: values sent for the declared variables (encoded); bounded, see the lane.
    checked: dict[bytes, VariableValues] = field(default_factory=dict)


@dataclass(slots=True)
class PlanStats:
    """Counters of compiled execution."""

    executions: int = 0
    compilations: int = 0
    fallbacks: dict[str, int] = field(default_factory=dict)
    #: Requests the fast lane answered by a plan, in front of Starlette.
    lane_served: int = 0
    #: Requests the fast lane passed on to Starlette, by reason.
    lane_fallbacks: dict[str, int] = field(default_factory=dict)


class Plans:
    """Plans by (document, operation name), bounded in entries like the parse cache."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.stats = PlanStats()
        self._entries: LRU[tuple[str, str | None], CompiledOperation | str] = LRU(
            max(1, max_entries)
        )
        self._compiler: Compiler | None = None

    def __len__(self) -> int:
        return len(self._entries)

    async def execute(
        self,
        schema: GraphQLSchema,
        query: str,
        document: DocumentNode,
        operation_name: str | None,
        raw_variables: dict[str, Any] | None,
        context: GatewayContext,
    ) -> ExecutionResult | None:
        """The operation's result by its plan; None when Strawberry must run it."""
        compiled = self._compiled(schema, query, document, operation_name)
        try:
            if isinstance(compiled, str):
                raise Unsupported(compiled)
            variables = self.variables(compiled, raw_variables)
            if variables is None:
                raise Unsupported("variables")  # Strawberry reports them as it always has
            plan = self.held(compiled, variables)
            if plan is None:
                plan = self._compile(compiled, document, operation_name, variables)
        except Unsupported as exc:
            self.stats.fallbacks[exc.reason] = self.stats.fallbacks.get(exc.reason, 0) + 1
            return None
        return await self.run(plan, variables, context)

    def known(self, query: str, operation_name: str | None) -> CompiledOperation | str:
        """The document's compiled operation, or why there is none yet (a reason)."""
        entry = self._entries.get((query, operation_name))
        if entry is None and operation_name is not None:
            # Kept without a name when it names the document's first operation.
            entry = self._entries.get((query, None))
            if isinstance(entry, CompiledOperation) and _name(entry.operation) != operation_name:
                entry = None
        if entry is None:
            return "unknown_document"
        if entry == _FIRST_SIGHT:
            return "not_compiled"
        return entry

    @property
    def schema(self) -> GraphQLSchema:
        """The schema the held plans were compiled against (once one has been compiled)."""
        assert self._compiler is not None
        return self._compiler.schema

    def name_of(self, compiled: CompiledOperation) -> str | None:
        """The name of the operation a compiled document runs."""
        return _name(compiled.operation)

    def variables(
        self, compiled: CompiledOperation, raw_variables: dict[str, Any] | None
    ) -> VariableValues | None:
        """The variables coerced per the operation's definitions; None when they are invalid."""
        assert self._compiler is not None
        definitions = compiled.operation.variable_definitions or ()
        variables = get_variable_values(self._compiler.schema, definitions, raw_variables or {})
        return variables if isinstance(variables, VariableValues) else None

    def held(self, compiled: CompiledOperation, variables: VariableValues) -> Plan | None:
        """The plan held for the variables' `@skip`/`@include` decisions, if compiled."""
        coerced = variables.coerced
        return compiled.plans.get(tuple(coerced.get(name) for name in compiled.conditions))

    async def run(
        self,
        plan: Plan,
        variables: VariableValues,
        context: GatewayContext,
        *,
        rendered: bool = False,
    ) -> ExecutionResult:
        """Execute `plan` through the services of `context`; with `rendered`, a cluster's part
        of the data may be its encoded bytes (for a caller that encodes it with orjson)."""
        self.stats.executions += 1
        run = Run(context, rendered=rendered)
        data = await plan.execute(run, variables)
        return ExecutionResult(data=data, errors=run.errors or None)

    def _compiled(
        self, schema: GraphQLSchema, query: str, document: DocumentNode, operation_name: str | None
    ) -> CompiledOperation | str:
        """The document's compiled operation, or why there is none (a reason, kept)."""
        # Strawberry runs the first operation of a request that names none: the first
        # one's name, asked for or implied, is kept as no name, as the fast lane reads it.
        first = next(
            (d for d in document.definitions if isinstance(d, OperationDefinitionNode)), None
        )
        key = (
            query,
            None if first is not None and _name(first) == operation_name else operation_name,
        )
        entry = self._entries.get(key)
        if entry is None:
            # A document is compiled the second time it comes: one-off documents would pay
            # for compiling more than the plan saves them.
            self._entries.put(key, _FIRST_SIGHT)
            return _FIRST_SIGHT
        if entry == _FIRST_SIGHT:
            if self._compiler is None or self._compiler.schema is not schema:
                self._compiler = Compiler(schema)
            try:
                self._compiler.find(document, operation_name)
                kept = parse(query, no_location=True)
                operation, _ = self._compiler.find(kept, operation_name)
                conditions = self._compiler.conditions(document)
                entry = CompiledOperation(key, kept, operation, conditions)
            except Unsupported as exc:
                entry = exc.reason
            self._entries.put(key, entry)
        return entry

    def _compile(
        self,
        compiled: CompiledOperation,
        document: DocumentNode,
        operation_name: str | None,
        variables: VariableValues,
    ) -> Plan:
        """Compile the plan for the variables' decisions from the parsed document (with the
        locations errors carry); a document a plan cannot cover is not compiled again."""
        assert self._compiler is not None
        coerced = variables.coerced
        try:
            operation, fragments = self._compiler.find(document, operation_name)
            plan = self._compiler.compile(operation, fragments, coerced)
        except Unsupported as exc:
            self._entries.put(compiled.key, exc.reason)
            raise
        self.stats.compilations += 1
        if len(compiled.plans) < MAX_DECISIONS:
            compiled.plans[tuple(coerced.get(name) for name in compiled.conditions)] = plan
        return plan


def _name(operation: OperationDefinitionNode) -> str | None:
    return None if operation.name is None else operation.name.value


class CompiledExecution(SchemaExtension):
    """Runs a validated query by its compiled plan; Strawberry executes what it cannot."""

    def __init__(self, plans: Plans) -> None:
        self.plans = plans

    async def on_execute(self) -> AsyncIterator[None]:
        context = self.execution_context
        gateway_context = context.context
        if (
            self.plans.max_entries > 0
            and context.result is None
            and context.graphql_document is not None
            and context.query is not None
            and isinstance(gateway_context, GatewayContext)
        ):
            result = await self.plans.execute(
                context.schema._schema,
                context.query,
                context.graphql_document,
                context.operation_name,
                context.variables,
                gateway_context,
            )
            if result is not None:
                # A result set before execution makes Strawberry skip its own.
                context.result = result
        yield


def plan_families(plans: Plans) -> Iterator[Metric]:
    """Compiled execution's counters, read at scrape."""
    executions = CounterMetricFamily(
        "pcsgw_compiled_executions", "Operations executed by a compiled plan."
    )
    executions.add_metric([], plans.stats.executions)
    yield executions
    fallbacks = CounterMetricFamily(
        "pcsgw_compiled_fallbacks",
        "Operations Strawberry executed because a plan does not cover them, by reason.",
        labels=["reason"],
    )
    for reason, count in sorted(plans.stats.fallbacks.items()):
        fallbacks.add_metric([reason], count)
    yield fallbacks
    served = CounterMetricFamily(
        "pcsgw_compiled_lane_served",
        "Requests the fast lane answered by a compiled plan, in front of Starlette.",
    )
    served.add_metric([], plans.stats.lane_served)
    yield served
    passed = CounterMetricFamily(
        "pcsgw_compiled_lane_fallbacks",
        "Requests to /graphql the fast lane passed on to Starlette, by reason.",
        labels=["reason"],
    )
    for reason, count in sorted(plans.stats.lane_fallbacks.items()):
        passed.add_metric([reason], count)
    yield passed
    held = GaugeMetricFamily("pcsgw_compiled_plans", "Documents held in the plan store.")
    held.add_metric([], len(plans))
    yield held

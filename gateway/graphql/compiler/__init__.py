"""Known query documents executed by compiled plans instead of Strawberry's executor.

    plans = Plans(max_entries=1000)
    schema = build_schema([lambda: CompiledExecution(plans)])

`CompiledExecution` is a schema extension: once Strawberry has parsed and validated an
operation and the operation limits have passed, it runs the operation's plan (compiled
once per document and operation name, kept in a bounded store) and hands Strawberry the
result, so execution is skipped while the error contract, the operation report, the stale
report and everything in front of the schema stay as they are. What a plan does not cover
falls back to Strawberry, counted by reason. Once a document is compiled, the compiled lane
(`gateway.http.compiled_lane`) runs its plans in front of Starlette through `Plans.known`,
`Plans.variables`, `Plans.held` and `Plans.run`.
"""

from gateway.graphql.compiler.execution import (
    CompiledExecution,
    CompiledOperation,
    Plans,
    plan_families,
)
from gateway.graphql.compiler.plan import Unsupported

__all__ = ["CompiledExecution", "CompiledOperation", "Plans", "Unsupported", "plan_families"]

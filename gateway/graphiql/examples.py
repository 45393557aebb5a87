"""What GraphiQL opens with: a ready query, then one tab per example in schema/examples/."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

#: schema/examples/ in a source checkout; a wheel carries the same files in the package.
_PACKAGED = Path(__file__).parent / "examples"
_SOURCE = Path(__file__).resolve().parent.parent.parent / "schema" / "examples"

OPENING_DEMO = """\
# A cluster of the built-in demo emulator.
# Run: the pink button, or Ctrl-Enter.
# The tabs above hold the example operations;
# Explorer and Docs are in the bar on the left.
query DemoCluster {
  cluster(identifier: "demo-full") {
    name
    id
    status
    size
    createdAt
    scheduler { type version }
    slurmConfiguration {
      slurmRest { mode }
      accounting { mode defaultPurgeTimeInDays }
    }
    endpoints { type privateIpAddress port }
  }
}
"""

OPENING = """\
# One cluster by name or id: set it under Variables.
# Run: the pink button, or Ctrl-Enter.
# The tabs above hold the example operations;
# Explorer and Docs are in the bar on the left.
query Cluster($identifier: String!) {
  cluster(identifier: $identifier) {
    name
    id
    status
    size
    createdAt
    scheduler { type version }
    endpoints { type privateIpAddress port }
  }
}
"""


@dataclass(frozen=True)
class Tab:
    """One editor tab: an operation, its variables and headers as JSON text."""

    query: str
    variables: str | None = None

    def as_graphiql(self, headers: str) -> dict[str, str]:
        """The tab in the shape of GraphiQL's `defaultTabs` items."""
        tab = {"query": self.query, "headers": headers}
        if self.variables is not None:
            tab["variables"] = self.variables
        return tab


def examples_folder() -> Path | None:
    """Where the example operations are: in the package when installed, else the checkout."""
    for folder in (_PACKAGED, _SOURCE):
        if folder.is_dir():
            return folder
    return None


def opening_tabs(demo: bool, folder: Path | None = None) -> list[Tab]:
    """The ready query (for a demo cluster in demo mode), then each example, by file name."""
    first = (
        Tab(OPENING_DEMO)
        if demo
        else Tab(OPENING, json.dumps({"identifier": "my-cluster"}, indent=2))
    )
    folder = folder or examples_folder()
    examples = sorted(folder.glob("*.graphql")) if folder is not None else []
    return [first, *(Tab(path.read_text(encoding="utf-8")) for path in examples)]

"""mkdocs hooks: pages made from the code and from the benchmark's results, so they cannot drift.

- `configuration.md`: the marker `<!-- settings-table -->` becomes a table of every field of
  `gateway.config.Settings` (variable, type, default, description).
- `performance.md`: the marker `<!-- benchmark-results -->` becomes an SVG chart of the
  gateway's throughput against its peers and a table of every server, read from the results
  file `bench/cached_queries.py --json` writes (`bench/results/cached-queries.json`, or the
  file named by `PCS_GATEWAY_BENCH_RESULTS`). The build fails when that file is missing.
- GraphiQL's screenshot (`schema/graphiql.png`) is served as `images/graphiql.png`.
"""

from __future__ import annotations

import enum
import html
import json
import os
import sys
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parent.parent
# The gateway of this checkout, not whichever one is installed.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SETTINGS_MARKER = "<!-- settings-table -->"
BENCHMARK_MARKER = "<!-- benchmark-results -->"
RESULTS_VARIABLE = "PCS_GATEWAY_BENCH_RESULTS"
DEFAULT_RESULTS = ROOT / "bench" / "results" / "cached-queries.json"
SCREENSHOT = ROOT / "schema" / "graphiql.png"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Serve the repository's GraphiQL screenshot with the site (one copy, in schema/)."""
    files.append(File.generated(config, "images/graphiql.png", abs_src_path=str(SCREENSHOT)))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Replace the markers of the configuration and performance pages."""
    name = page.file.src_uri
    if name == "configuration.md":
        return _replace(markdown, SETTINGS_MARKER, settings_table(), name)
    if name == "performance.md":
        return _replace(markdown, BENCHMARK_MARKER, benchmark_section(results_path()), name)
    return markdown


def _replace(markdown: str, marker: str, content: str, page: str) -> str:
    if marker not in markdown:
        raise PluginError(f"{page} lacks the marker {marker} the docs hook replaces")
    return markdown.replace(marker, content)


# --- the settings table ---------------------------------------------------------------


def settings_table() -> str:
    """A Markdown table of every setting: variable, type, default, description."""
    from gateway.config import ENV_PREFIX, Settings

    rows = [
        "| variable | type | default | description |",
        "| --- | --- | --- | --- |",
    ]
    for name, field in Settings.model_fields.items():
        if not field.description:
            raise PluginError(f"Settings.{name} has no description")
        rows.append(
            "| `{}` | {} | {} | {} |".format(
                f"{ENV_PREFIX}{name.upper()}",
                _cell(describe_type(name, field)),
                _cell(describe_default(name, field)),
                _cell(field.description),
            )
        )
    return "\n".join(rows)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """The annotation without `| None` and `Annotated`, and the constraints found inside."""
    constraints: list[Any] = []
    if get_origin(annotation) in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            annotation = members[0]
    metadata = getattr(annotation, "__metadata__", None)
    if metadata is not None:
        annotation = annotation.__origin__
        for item in metadata:
            constraints.extend(getattr(item, "metadata", [item]))
    return annotation, constraints


def describe_type(name: str, field: FieldInfo) -> str:
    """The type as a reader sets it in a variable, with its allowed range."""
    annotation, constraints = _unwrap(field.annotation)
    constraints += field.metadata
    origin = get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(f"`{value}`" for value in get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(f"`{member.value}`" for member in annotation)
    if origin is dict:
        return "JSON object"
    if origin is list:
        return "comma-separated list"
    kinds: dict[Any, str] = {
        bool: "boolean",
        int: "integer",
        float: "seconds" if name.endswith("_seconds") else "number",
        str: "string",
        Path: "path",
        SecretStr: "secret string",
    }
    kind = kinds.get(annotation, getattr(annotation, "__name__", str(annotation)))
    bounds = _bounds(constraints)
    return f"{kind}, {bounds}" if bounds else kind


def _bounds(constraints: list[Any]) -> str:
    low: tuple[str, Any] | None = None
    high: tuple[str, Any] | None = None
    words: list[str] = []
    for item in constraints:
        if isinstance(item, annotated_types.Ge):
            low = ("ge", item.ge)
        elif isinstance(item, annotated_types.Gt):
            low = ("gt", item.gt)
        elif isinstance(item, annotated_types.Le):
            high = ("le", item.le)
        elif isinstance(item, annotated_types.Lt):
            high = ("lt", item.lt)
        elif isinstance(item, annotated_types.MinLen) and item.min_length == 1:
            words.append("not empty")
    if low is not None and low[0] == "ge" and high is not None and high[0] == "le":
        words.append(f"{_number(low[1])} to {_number(high[1])}")
    else:
        if low is not None:
            words.append(f"{'at least' if low[0] == 'ge' else 'over'} {_number(low[1])}")
        if high is not None:
            words.append(f"{'at most' if high[0] == 'le' else 'under'} {_number(high[1])}")
    return ", ".join(words)


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}" if isinstance(value, int) else str(value)


def describe_default(name: str, field: FieldInfo) -> str:
    """The default as it would be written in the variable; a secret's is never shown."""
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if value is None:
        return "(unset)"
    if isinstance(value, SecretStr) or SecretStr in _members(field.annotation):
        return "(hidden)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, enum.Enum):
        return f"`{value.value}`"
    if isinstance(value, list) and not value:
        return "(none)"
    if isinstance(value, dict):
        return f"`{json.dumps(value)}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    shown = f"`{value}`"
    if isinstance(value, int) and name.endswith("_bytes") and value >= 1024:
        for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
            if value % size == 0:
                return f"{shown} ({value // size} {unit})"
    return shown


def _members(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return (annotation,)


# --- the benchmark's results ----------------------------------------------------------

#: How the benchmark's scenarios read in the docs (unknown ones keep their name).
SCENARIO_NAMES = {
    "full": "full, cached",
    "status": "status, cached",
    "full-get": "full over GET",
    "full-apq": "full by APQ hash over GET",
    "status-apq": "status by APQ hash over GET",
    "new-shape": "new document each request",
    "mixed": "mixed, 5% misses",
    "mixed-20": "mixed, 20% new variables",
    "known": "known document, answer cache off",
    "keys-500": "500 API keys in turn, TTL 1 s",
    "production": "production settings",
    "workers": "workers on one core",
}
#: The gateway's own server in a scenario: the first of these it ran.
GATEWAY_SERVERS = ("gateway", "production", "compiled", "keys")
#: The bars of each scenario: (ratio key, legend, colour).
PEERS = (
    ("mercurius", "vs Mercurius", "#2563eb"),
    ("apollo", "vs Apollo Server", "#9333ea"),
    ("ceiling", "vs raw-ASGI ceiling", "#6b7280"),
)


def results_path() -> Path:
    """`PCS_GATEWAY_BENCH_RESULTS` (relative to the repository root) or the default file."""
    chosen = os.environ.get(RESULTS_VARIABLE)
    return (ROOT / chosen) if chosen else DEFAULT_RESULTS


def load_results(path: Path) -> dict[str, Any]:
    """The results file, checked for the parts the page shows."""
    if not path.is_file():
        raise PluginError(
            f"benchmark results not found: {path}. Run `python3 bench/cached_queries.py` "
            f"(it writes {DEFAULT_RESULTS.relative_to(ROOT)}), or set {RESULTS_VARIABLE} "
            "to a results file."
        )
    try:
        report = json.loads(path.read_text())
        scenarios = report["scenarios"]
        for rows in scenarios.values():
            for row in rows.values():
                for key in ("rps", "p50_ms", "p99_ms"):
                    float(row[key])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PluginError(
            f"benchmark results in {path} are not in the format of bench/cached_queries.py "
            f"--json: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(report, dict) or not scenarios:
        raise PluginError(f"benchmark results in {path} hold no scenario")
    return report


def benchmark_section(path: Path) -> str:
    """The chart, the table and the run's command and machine, from one results file."""
    report = load_results(path)
    parts = []
    command = report.get("command")
    machine = report.get("machine")
    if command or machine:
        said = []
        if command:
            said.append(f"`{command}`")
        if machine:
            said.append(f"on {machine}")
        parts.append("Measured with " + " ".join(said) + ".")
    chart = ratio_chart(report["scenarios"])
    if chart:
        parts.append(f'<div class="bench-chart">\n{chart}\n</div>')
    parts.append(results_table(report["scenarios"]))
    parts.extend(_special(report))
    return "\n\n".join(parts)


def _gateway_row(rows: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    for name in GATEWAY_SERVERS:
        if name in rows:
            return name, rows[name]
    return None


def ratio_chart(scenarios: dict[str, Any]) -> str:
    """A horizontal bar chart (SVG) of the gateway's req/s over each peer's, per scenario."""
    groups: list[tuple[str, list[tuple[str, str, float]]]] = []
    for scenario, rows in scenarios.items():
        found = _gateway_row(rows)
        if found is None:
            continue
        _, row = found
        bars = [
            (legend, colour, float(row[f"rps_vs_{peer}"]))
            for peer, legend, colour in PEERS
            if f"rps_vs_{peer}" in row
        ]
        if bars:
            groups.append((SCENARIO_NAMES.get(scenario, scenario), bars))
    if not groups:
        return ""
    label_width, bar_width, right = 190, 420, 60
    width = label_width + bar_width + right
    bar_height, bar_gap, group_gap, top = 14, 3, 16, 44
    largest = max(1.0, *(ratio for _, bars in groups for _, _, ratio in bars)) * 1.05

    def x(ratio: float) -> float:
        return label_width + bar_width * ratio / largest

    out: list[str] = []
    legend_x = label_width
    for _, legend, colour in PEERS:
        out.append(
            f'<rect x="{legend_x}" y="8" width="12" height="12" fill="{colour}"/>'
            f'<text x="{legend_x + 16}" y="18">{html.escape(legend)}</text>'
        )
        legend_x += 150
    y = top
    for label, bars in groups:
        group_height = len(bars) * (bar_height + bar_gap) - bar_gap
        out.append(
            f'<text x="{label_width - 8}" y="{y + group_height / 2 + 4:.1f}" '
            f'text-anchor="end">{html.escape(label)}</text>'
        )
        for legend, colour, ratio in bars:
            end = x(ratio)
            out.append(
                f'<rect x="{label_width}" y="{y}" width="{end - label_width:.1f}" '
                f'height="{bar_height}" fill="{colour}"><title>{html.escape(label)}, '
                f"{html.escape(legend)}: {ratio:.2f}x</title></rect>"
                f'<text x="{end + 4:.1f}" y="{y + bar_height - 3}">{ratio:.2f}x</text>'
            )
            y += bar_height + bar_gap
        y += group_gap - bar_gap
    parity = x(1.0)
    out.append(
        f'<line x1="{parity:.1f}" y1="{top - 8}" x2="{parity:.1f}" y2="{y - group_gap + 4}" '
        'stroke="currentColor" stroke-dasharray="4 3"/>'
        f'<text x="{parity:.1f}" y="{y + 6}" text-anchor="middle">1x: as fast</text>'
    )
    height = y + 14
    title = "The gateway's requests per second over each peer's, per scenario"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="{title}" font-family="sans-serif" '
        f'font-size="12" fill="currentColor"><title>{title}</title>' + "".join(out) + "</svg>"
    )


def results_table(scenarios: dict[str, Any]) -> str:
    """req/s, p50 and p99 of every server in every scenario, fastest first."""
    rows = [
        "| scenario | server | req/s | p50 ms | p99 ms | vs Apollo | vs Mercurius | wrong |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for scenario, servers in scenarios.items():
        label = SCENARIO_NAMES.get(scenario, scenario)
        ordered = sorted(servers.items(), key=lambda item: -float(item[1]["rps"]))
        for index, (server, row) in enumerate(ordered):
            versus = [
                f"{float(row[f'rps_vs_{peer}']):.2f}x" if f"rps_vs_{peer}" in row else ""
                for peer in ("apollo", "mercurius")
            ]
            wrong = int(row.get("wrong", 0)) + int(row.get("errors", 0))
            name = f"**{server}**" if server in GATEWAY_SERVERS else server
            rows.append(
                f"| {label if index == 0 else ''} | {name} | {float(row['rps']):,.0f} | "
                f"{float(row['p50_ms']):.2f} | {float(row['p99_ms']):.2f} | "
                f"{versus[0]} | {versus[1]} | {wrong} |"
            )
    return "\n".join(rows)


def _special(report: dict[str, Any]) -> list[str]:
    lines = []
    burst = report.get("cold_burst")
    if isinstance(burst, dict):
        lines.append(
            f"- **Cold burst**: {burst['requests']:,} requests from {burst['clients']} clients "
            f"over {burst['identifiers']} clusters made {burst['pcs_calls']} PCS calls "
            f"({float(burst['pcs_calls_per_identifier']):.2f} a cluster); "
            f"{burst['right_answers']:,} right answers in {burst['seconds']} s."
        )
    held = report.get("memory")
    if isinstance(held, dict):
        lines.append(
            f"- **Memory**: {held['clusters']:,} clusters cached and {held['answers_cached']:,} "
            f"answers ({held['answer_cache_mb']} MB) in the answer cache: peak RSS "
            f"{held['peak_rss_mb']} MB, {held['peak_over_first']}x the "
            f"{held['rss_after_first_answer_mb']} MB after the first answer."
        )
    return ["\n".join(lines)] if lines else []

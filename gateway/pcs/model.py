"""The shipped PCS service model: where it lives and how the gateway reads it.

The model is refreshed from the newest botocore with `python3 -m tools.pcs_model refresh`.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SERVICE_NAME = "pcs"
API_VERSION = "2023-02-10"
DATA_PATH = Path(__file__).parent / "data"
MODEL_FILE = DATA_PATH / SERVICE_NAME / API_VERSION / "service-2.json"
#: Where the shipped model came from: botocore's version, the file, its digest.
SOURCE_FILE = DATA_PATH / "source.json"


@cache
def load_model() -> dict[str, Any]:
    """The shipped model as a dict (read once)."""
    loaded: dict[str, Any] = json.loads(MODEL_FILE.read_text(encoding="utf-8"))
    return loaded


def shapes() -> dict[str, Any]:
    """The shipped model's shapes by name."""
    found: dict[str, Any] = load_model()["shapes"]
    return found


def enum_values(shape_name: str) -> tuple[str, ...]:
    """The values of one of the model's enum shapes."""
    return tuple(shapes()[shape_name]["enum"])


def error_codes() -> frozenset[str]:
    """The exceptions the model defines, by the code PCS sends for them."""
    return frozenset(name for name, shape in shapes().items() if shape.get("exception"))


def identifier_pattern() -> str:
    """The pattern the model sets for cluster identifiers."""
    pattern: str = shapes()["ClusterIdentifier"]["pattern"]
    return pattern

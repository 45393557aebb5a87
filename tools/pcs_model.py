"""The shipped PCS model's maintenance: refresh it from the newest botocore, compare with the SDK.

python3 -m tools.pcs_model refresh    fetch the newest botocore, replace the model, list changes
python3 -m tools.pcs_model diff-sdk   compare the shipped model with the installed botocore
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import botocore.loaders

from gateway.pcs.model import API_VERSION, MODEL_FILE, SERVICE_NAME, SOURCE_FILE, load_model

MEMBER_IN_WHEEL = f"botocore/data/{SERVICE_NAME}/{API_VERSION}/service-2.json"
# Keys that carry prose, not facts about the wire format.
_PROSE_KEYS = frozenset({"documentation", "documentationUrl", "examples"})


def installed_sdk_model() -> dict[str, Any]:
    """The PCS model of the botocore that is installed (the one aioboto3 pins)."""
    loader = botocore.loaders.Loader()
    model: dict[str, Any] = loader.load_service_model(SERVICE_NAME, "service-2", API_VERSION)
    return model


def strip_documentation(value: Any) -> Any:
    """The model without its prose: documentation strings and examples removed."""
    if isinstance(value, Mapping):
        return {k: strip_documentation(v) for k, v in value.items() if k not in _PROSE_KEYS}
    if isinstance(value, list):
        return [strip_documentation(item) for item in value]
    return value


def facts(model: Mapping[str, Any]) -> set[str]:
    """Every shape, member and enum value of a model, as comparable strings."""
    found: set[str] = set()
    for name, shape in model["shapes"].items():
        found.add(f"shape {name}")
        for member in shape.get("members", {}):
            found.add(f"member {name}.{member}")
        for value in shape.get("enum", ()):
            found.add(f"enum {name}.{value}")
    for name in model.get("operations", {}):
        found.add(f"operation {name}")
    return found


def diff_models(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """What `new` adds to `old`, and what it removes, as sorted fact strings."""
    before, after = facts(old), facts(new)
    return sorted(after - before), sorted(before - after)


def _write(model: Mapping[str, Any], version: str) -> None:
    text = json.dumps(strip_documentation(model), indent=1, sort_keys=False) + "\n"
    MODEL_FILE.parent.mkdir(parents=True, exist_ok=True)
    MODEL_FILE.write_text(text, encoding="utf-8")
    source = {
        "package": "botocore",
        "version": version,
        "file": MEMBER_IN_WHEEL,
        "retrieved": dt.date.today().isoformat(),
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "license": "Apache-2.0 (see NOTICE)",
    }
    SOURCE_FILE.write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")


def _newest_botocore_model() -> tuple[dict[str, Any], str]:
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--quiet",
                "--dest",
                folder,
                "botocore",
            ],
            check=True,
        )
        wheel = next(Path(folder).glob("botocore-*.whl"))
        version = wheel.name.split("-")[1]
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
            if MEMBER_IN_WHEEL in names:
                raw = archive.read(MEMBER_IN_WHEEL)
            else:
                raw = gzip.decompress(archive.read(MEMBER_IN_WHEEL + ".gz"))
        return json.load(io.BytesIO(raw)), version


def _print_changes(added: list[str], removed: list[str]) -> None:
    for line in added:
        print(f"+ {line}")
    for line in removed:
        print(f"- {line}")
    if not added and not removed:
        print("no shape, member, enum value or operation changed")


def main(argv: list[str] | None = None) -> int:
    """Command line: refresh the shipped model, or compare it with the installed SDK's."""
    parser = argparse.ArgumentParser(
        prog="python3 -m tools.pcs_model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["refresh", "diff-sdk"])
    args = parser.parse_args(argv)
    if args.command == "refresh":
        new, version = _newest_botocore_model()
        old = load_model()
        added, removed = diff_models(old, new)
        _write(new, version)
        load_model.cache_clear()
        print(f"shipped model now from botocore {version}")
        _print_changes(added, removed)
        return 0
    added, removed = diff_models(installed_sdk_model(), load_model())
    print("shipped model compared with the installed botocore's:")
    _print_changes(added, removed)
    return 1 if removed else 0


if __name__ == "__main__":
    raise SystemExit(main())

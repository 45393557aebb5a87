"""The pinned GraphiQL assets, downloaded once by the documented command and kept between runs."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Outside the repository (the bundles are never committed), kept between runs.
ASSETS_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pcs-gateway" / "graphiql"
)


@functools.cache
def downloaded_assets() -> Path:
    """The pinned assets, fetched once by the documented command (kept when already there)."""
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "graphiql-assets", "download", str(ASSETS_CACHE)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return ASSETS_CACHE

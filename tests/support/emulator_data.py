"""The emulator's demo data and listings as tests read them."""

from __future__ import annotations

from typing import Any

from gateway.emulator.seed import demo_regions

FULL = next(c for c in demo_regions()["us-east-1"] if c["name"] == "demo-full")


async def pages(client: Any, operation: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Every item of a listing, through botocore's paginator."""
    found: list[dict[str, Any]] = []
    async for page in client.get_paginator(operation).paginate(**kwargs):
        found += page[key]
    return found

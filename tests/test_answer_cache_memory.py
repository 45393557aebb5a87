"""The answer cache's byte count is what its entries really hold, so its byte cap holds."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import pytest

from gateway.http.answer_cache import AnswerCache
from tests.support.gateway import GatewayFactory

ROOT = Path(__file__).resolve().parent.parent
FULL = (ROOT / "schema" / "examples" / "cluster-full.graphql").read_text()
ANSWERS = 400

pytestmark = pytest.mark.gateway("in_process")


def held(gateway_app: object) -> int:
    assert isinstance(gateway_app, AnswerCache)
    return gateway_app.held_bytes


def test_counted_bytes_cover_what_stored_answers_really_take(
    start_gateway: GatewayFactory,
) -> None:
    gateway = start_gateway()
    # Warm everything but the answers: the cluster cache, parse caches, metric children.
    assert gateway.query(FULL, {"identifier": "demo-full", "n": -1})["data"]["cluster"]
    counted_before = held(gateway.app)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(ANSWERS):
            # A variable the operation ignores: each request a new answer-cache entry.
            answer = gateway.query(FULL, {"identifier": "demo-full", "n": n})
            assert answer["data"]["cluster"]["name"] == "demo-full"
        gc.collect()
        measured = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    counted = held(gateway.app) - counted_before
    assert len(gateway.app) == ANSWERS + 1  # type: ignore[arg-type]
    # The cap bounds real memory: what is counted is at least what is held (a tenth of
    # slack for allocator noise), and not wildly more (the cache is not needlessly small).
    print(f"answer cache: {counted} bytes counted, {measured} measured for {ANSWERS} answers")
    assert counted >= 0.9 * measured, (counted, measured)
    assert counted <= 2.0 * measured, (counted, measured)

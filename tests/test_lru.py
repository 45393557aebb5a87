"""The bounded LRU map under the answer cache, APQ documents and the cluster caches."""

from __future__ import annotations

import pytest

from gateway.lru import LRU


def test_the_least_recently_used_entry_goes_first() -> None:
    lru: LRU[str, int] = LRU(2)
    assert lru.put("a", 1) == 0
    assert lru.put("b", 2) == 0
    assert lru.get("a") == 1  # now the most recently used
    assert lru.put("c", 3) == 1
    assert list(lru) == ["a", "c"]
    assert "b" not in lru


def test_peek_and_in_leave_the_order_unchanged() -> None:
    lru: LRU[str, int] = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.peek("a") == 1
    assert "a" in lru
    lru.put("c", 3)
    assert list(lru) == ["b", "c"]


def test_the_byte_bound_evicts_until_it_holds() -> None:
    lru: LRU[str, bytes] = LRU(10, max_bytes=10, size=len)
    lru.put("a", b"xxxx")
    lru.put("b", b"yyyy")
    assert lru.put("c", b"zzzzzzz") == 2
    assert (list(lru), lru.bytes) == (["c"], 7)
    assert lru.put("c", b"z") == 0  # replacing counts the new size only
    assert lru.bytes == 1
    assert lru.pop("c") == b"z"
    assert (len(lru), lru.bytes, lru.pop("c")) == (0, 0, None)


def test_a_byte_bound_needs_a_size() -> None:
    with pytest.raises(ValueError, match="max_bytes and size go together"):
        LRU(10, max_bytes=10)

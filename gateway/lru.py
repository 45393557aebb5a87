"""A bounded map that forgets its least recently used entries first.

    documents: LRU[str, str] = LRU(1000)
    answers: LRU[bytes, Entry] = LRU(10_000, max_bytes=2**26, size=lambda entry: entry.size)

`get` marks an entry used, `peek` and `in` do not; `put` returns how many entries the
bounds pushed out, so an owner can count evictions in its own stats.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, ValuesView
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """At most `max_entries` entries and, given `size`, at most `max_bytes` of them."""

    __slots__ = ("_entries", "_size", "bytes", "max_bytes", "max_entries")

    def __init__(
        self,
        max_entries: int,
        *,
        max_bytes: int | None = None,
        size: Callable[[V], int] | None = None,
    ) -> None:
        if (max_bytes is None) != (size is None):
            raise ValueError("max_bytes and size go together")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        #: What the entries held take, by `size`; 0 without byte accounting.
        self.bytes = 0
        self._size = size
        self._entries: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[K]:
        return iter(self._entries)

    def values(self) -> ValuesView[V]:
        """The values, least recently used first."""
        return self._entries.values()

    def get(self, key: K) -> V | None:
        """The value under `key`, now the most recently used; None when absent."""
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def peek(self, key: K) -> V | None:
        """The value under `key`, its place unchanged; None when absent."""
        return self._entries.get(key)

    def put(self, key: K, value: V) -> int:
        """Hold `value` under `key` as the most recently used; the number of entries evicted."""
        self.pop(key)
        self._entries[key] = value
        if self._size is not None:
            self.bytes += self._size(value)
        evicted = 0
        while len(self._entries) > self.max_entries or (
            self.max_bytes is not None and self.bytes > self.max_bytes
        ):
            _, old = self._entries.popitem(last=False)
            if self._size is not None:
                self.bytes -= self._size(old)
            evicted += 1
        return evicted

    def pop(self, key: K) -> V | None:
        """Forget `key`; its value, or None when absent."""
        value = self._entries.pop(key, None)
        if value is not None and self._size is not None:
            self.bytes -= self._size(value)
        return value

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()
        self.bytes = 0

"""Ages in an encoded answer: the bytes cut around each `ageSeconds` value, and joined
again with the ages of the moment.

An answer is the same bytes for as long as its clusters are unchanged, but for the ages
it reports: whoever reuses encoded bytes (the answer cache, a plan's rendered parts) keeps
them cut where the ages go and restates the ages at each use.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson


def cut_ages(
    body: bytes, ages: list[tuple[str, float, float]]
) -> tuple[tuple[bytes, ...], tuple[float, ...]] | None:
    """The body cut around each `ageSeconds` value, or None when they cannot be told apart.

    A value is found as `"<response key>":<value>` followed by `,` or `}`; inside a JSON
    string the quotes would be escaped, so only real members match. Two ages of different
    clusters with the same key and value are ambiguous: such an answer is not stored.
    """
    if not ages:
        return (body,), ()
    by_member: dict[tuple[bytes, bytes], set[float]] = {}
    expected: dict[tuple[bytes, bytes], int] = {}
    for response_key, fetched_at, value in ages:
        member = (b'"%s":' % response_key.encode(), orjson.dumps(value))
        by_member.setdefault(member, set()).add(fetched_at)
        expected[member] = expected.get(member, 0) + 1
    slots: list[tuple[int, int, float]] = []
    for member, fetched in by_member.items():
        if len(fetched) != 1:
            return None
        fetched_at = next(iter(fetched))
        name, encoded = member
        pattern = name + encoded
        found = 0
        start = body.find(pattern)
        while start != -1:
            end = start + len(pattern)
            if body[end : end + 1] in (b",", b"}"):
                slots.append((start + len(name), end, fetched_at))
                found += 1
            start = body.find(pattern, end)
        if found != expected[member]:
            return None
    slots.sort()
    parts: list[bytes] = []
    position = 0
    for value_start, end, _ in slots:
        parts.append(body[position:value_start])
        position = end
    parts.append(body[position:])
    return tuple(parts), tuple(fetched_at for _, _, fetched_at in slots)


def join_ages(parts: tuple[bytes, ...], ages: Iterable[float]) -> bytes:
    """`parts` joined with an age (seconds, rounded as a field reports it) between each two."""
    pieces = [parts[0]]
    for index, age in enumerate(ages, start=1):
        pieces.append(orjson.dumps(round(age, 3)))
        pieces.append(parts[index])
    return b"".join(pieces)

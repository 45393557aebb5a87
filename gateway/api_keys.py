"""API-key entries: `KEY[:scope scope...]` or `sha256:HEX[:scope...]`, held as SHA-256 digests.

Settings check the entries with these functions at start and authentication reads
them the same way; a leaf module, so settings need nothing of security.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

#: Shortest API key accepted: guessing one must stay out of reach.
MIN_KEY_LENGTH = 16


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One configured key: its SHA-256 digest and the scopes it grants."""

    digest: bytes
    scopes: frozenset[str]


def parse_api_keys(text: str) -> list[ApiKey]:
    """Keys from comma- or newline-separated entries `KEY[:scope scope...]` or `sha256:HEX[:...]`.

    Blank entries and lines starting with `#` are skipped. Raises ValueError naming the entry
    by position, never by value.
    """
    keys: list[ApiKey] = []
    entries = [part.strip() for line in text.splitlines() for part in line.split(",")]
    position = 0
    for entry in entries:
        if not entry or entry.startswith("#"):
            continue
        position += 1
        if entry.startswith("sha256:"):
            hex_digest, _, scopes = entry.removeprefix("sha256:").partition(":")
            try:
                digest = bytes.fromhex(hex_digest)
            except ValueError:
                digest = b""
            if len(digest) != 32:
                raise ValueError(f"entry {position}: sha256: needs 64 hexadecimal digits")
        else:
            key, _, scopes = entry.partition(":")
            if len(key) < MIN_KEY_LENGTH or any(c.isspace() for c in key):
                raise ValueError(
                    f"entry {position}: a key needs {MIN_KEY_LENGTH} or more characters, no spaces"
                )
            digest = hashlib.sha256(key.encode()).digest()
        keys.append(ApiKey(digest, frozenset(scopes.split())))
    return keys


def read_api_keys_file(path: Path) -> list[ApiKey]:
    """The keys in a file; ValueError when it cannot be read or holds none."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the file ({type(exc).__name__})") from None
    keys = parse_api_keys(text)
    if not keys:
        raise ValueError("the file holds no key")
    return keys

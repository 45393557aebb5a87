"""GraphiQL's third-party scripts and styles: pinned npm packages, verified and held in memory.

Each file is pinned by version and by its SHA-384 (the browser's subresource integrity);
each package tarball by the registry's own SHA-512 integrity. The bundles are never part of
the repository: `pcs-gateway graphiql-assets download DIR` fetches them, and the gateway
serves them from DIR when `PCS_GATEWAY_GRAPHIQL_ASSETS_DIR` points there, else the page
loads the same files, by the same hashes, from the public CDN.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

#: Where the page loads the pinned files from when they are not local (same paths as here).
CDN_URL = "https://unpkg.com"
DEFAULT_REGISTRY = "https://registry.npmjs.org"


@dataclass(frozen=True)
class AssetFile:
    """One file of a package: its path in the package and its subresource-integrity hash."""

    path: str
    integrity: str


@dataclass(frozen=True)
class Package:
    """An npm package at a pinned version, with the files the page needs from it."""

    name: str
    version: str
    #: The registry's `dist.integrity` of the tarball.
    integrity: str
    files: tuple[AssetFile, ...]

    @property
    def folder(self) -> str:
        """`name@version`: the package's folder locally, and its path on the CDN."""
        return f"{self.name}@{self.version}"

    def tarball_url(self, registry: str = DEFAULT_REGISTRY) -> str:
        """The tarball's address in an npm registry (scoped names keep their scope)."""
        basename = self.name.rsplit("/", 1)[-1]
        return f"{registry.rstrip('/')}/{self.name}/-/{basename}-{self.version}.tgz"


# GraphiQL 3 is the newest line with browser (UMD) bundles that need no build step; React 18
# is the newest with UMD builds. The explorer plugin 3.2 pairs with GraphiQL 3.9's React kit.
PACKAGES: tuple[Package, ...] = (
    Package(
        "react",
        "18.3.1",
        "sha512-wS+hAgJShR0KhEvPJArfuPVN1+Hz1t0Y6n5jLrGQbkb4urgPE/0Rve+1kMB1v/oWgHgm4WIcV+i7F2pTVj+2iQ==",
        (
            AssetFile(
                "umd/react.production.min.js",
                "sha384-DGyLxAyjq0f9SPpVevD6IgztCFlnMF6oW/XQGmfe+IsZ8TqEiDrcHkMLKI6fiB/Z",
            ),
        ),
    ),
    Package(
        "react-dom",
        "18.3.1",
        "sha512-5m4nQKp+rZRb09LNH59GM4BxTh9251/ylbKIbpe7TpGxfJ+9kv6BLkLBXIjjspbgbnIBNqlI23tRnTWT0snUIw==",
        (
            AssetFile(
                "umd/react-dom.production.min.js",
                "sha384-gTGxhz21lVGYNMcdJOyq01Edg0jhn/c22nsx0kyqP0TxaV5WVdsSH1fSDUf5YJj1",
            ),
        ),
    ),
    Package(
        "graphiql",
        "3.9.0",
        "sha512-rJYFlHdBbug9+YbFSwRVvgfPjCayC7wHecZkx/qB4XLuQPFQZw/yB9pmHFtOJV6RiNBBHro3u1GdocKa3YcGRA==",
        (
            AssetFile(
                "graphiql.min.js",
                "sha384-8NGfVj4CVlqHajlZj+bPJT4thxPMHMJYn7DWK2CvtopLd02E7qsPHazniBYvVjOO",
            ),
            AssetFile(
                "graphiql.min.css",
                "sha384-QMux00XgRtwRLSYIY3kw2rj1ovk5AuuliAchk+HSQbqdbGFnz9GYuqIlOqxhwCE2",
            ),
        ),
    ),
    Package(
        "@graphiql/plugin-explorer",
        "3.2.6",
        "sha512-MXzG/zVNzZfes4Em253bHyAbD/lwwAZkPKvxCAQkjz0i3dtcv4uF3D8iqJ7214iu3SCphbORYZZUC93fik1yew==",
        (
            AssetFile(
                "dist/index.umd.js",
                "sha384-5p6hGdlOTvUy6Wf0GauxCz+xM9YB/YYvcGG+bf9msr2eyd+KVIxgRkepHgUijedJ",
            ),
            AssetFile(
                "dist/style.css",
                "sha384-YN9MumWidbWKuNj8VfH5ggrFvm9YqAoIOMnKYpeGL3dr7Eg1qnQ+SAqSthdNZCjz",
            ),
        ),
    ),
)

CONTENT_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


class AssetError(Exception):
    """A missing, unreadable or altered asset; the message is one line and names the file."""


def sri(data: bytes, algorithm: str = "sha384") -> str:
    """The subresource-integrity string (`sha384-<base64>`) of some bytes."""
    digest = hashlib.new(algorithm, data).digest()
    return f"{algorithm}-{base64.b64encode(digest).decode()}"


def pinned_files() -> Iterator[tuple[str, AssetFile]]:
    """Every pinned file as (`name@version/path`, file), in the order the page loads them."""
    for package in PACKAGES:
        for file in package.files:
            yield f"{package.folder}/{file.path}", file


@dataclass(frozen=True)
class Asset:
    """One file as the gateway serves it: bytes, gzip bytes, integrity, content type."""

    body: bytes
    gzipped: bytes
    integrity: str
    content_type: str

    @classmethod
    def of(cls, name: str, body: bytes, integrity: str | None = None) -> Asset:
        """The asset for `name` (a path ending in .js or .css) with these bytes."""
        suffix = PurePosixPath(name).suffix
        # mtime=0: the same bytes give the same gzip, so every replica serves one ETag.
        gzipped = gzip.compress(body, compresslevel=9, mtime=0)
        return cls(body, gzipped, integrity or sri(body), CONTENT_TYPES[suffix])

    @property
    def etag(self) -> str:
        """A strong validator derived from the integrity hash."""
        return '"' + hashlib.sha256(self.integrity.encode()).hexdigest()[:32] + '"'


def verified(folder: Path, name: str, file: AssetFile) -> bytes:
    """The bytes of `folder/name`, raising AssetError unless they match the pinned hash."""
    path = folder / name
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise AssetError(f"{name}: cannot read it ({exc.strerror or 'unreadable'})") from None
    if sri(body) != file.integrity:
        raise AssetError(f"{name}: its SHA-384 differs from the pinned one")
    return body


def load_folder(folder: Path) -> dict[str, Asset]:
    """Every pinned file from a folder made by `graphiql-assets download`, verified."""
    if not folder.is_dir():
        raise AssetError(f"{folder}: not a folder")
    return {
        name: Asset.of(name, verified(folder, name, file), file.integrity)
        for name, file in pinned_files()
    }

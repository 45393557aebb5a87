"""`pcs-gateway graphiql-assets download DIR`: the pinned npm tarballs over HTTPS, no Node.

Each tarball must match the registry's SHA-512 integrity pinned in `assets.PACKAGES`, and
each file taken from it the SHA-384 the page's integrity attributes carry; nothing else in
the tarball is written. Files already in DIR with the right hash are kept, so a second run
makes no request.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from gateway.graphiql.assets import DEFAULT_REGISTRY, PACKAGES, AssetError, Package, sri

#: Largest tarball accepted; the pinned ones are under 3 MB.
MAX_TARBALL_BYTES = 32 * 1024 * 1024
#: Files kept beside the bundles: the packages' licences travel with them.
LICENSE_NAMES = ("LICENSE", "LICENSE.md", "LICENSE.txt")


def fetch(url: str, timeout: float = 60) -> bytes:
    """The body at an https URL (certificates verified), at most MAX_TARBALL_BYTES."""
    if not url.startswith(("https://", "http://")):
        raise AssetError(f"{url}: only http(s) registries are supported")
    request = urllib.request.Request(url, headers={"User-Agent": "pcs-gateway"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body: bytes = response.read(MAX_TARBALL_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise AssetError(f"{url}: the registry answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AssetError(f"{url}: cannot reach the registry ({reason})") from None
    if len(body) > MAX_TARBALL_BYTES:
        raise AssetError(f"{url}: larger than {MAX_TARBALL_BYTES} bytes")
    return body


#: Public files, served to any browser: readable by the user the gateway runs as.
PUBLIC_FILE_MODE = 0o644


def _present(target: Path, package: Package) -> bool:
    for file in package.files:
        path = target / package.folder / file.path
        if not path.is_file() or sri(path.read_bytes()) != file.integrity:
            return False
        # Folders written before files were made world-readable get the same mode.
        path.chmod(PUBLIC_FILE_MODE)
    return True


def _write(path: Path, body: bytes) -> None:
    """Write through a temporary file, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as temporary:
        temporary.write(body)
    os.chmod(temporary.name, PUBLIC_FILE_MODE)
    os.replace(temporary.name, path)


def unpack(package: Package, tarball: bytes) -> dict[str, bytes]:
    """The pinned files (and licence) of a verified tarball, by path in the package."""
    if sri(tarball, "sha512") != package.integrity:
        raise AssetError(f"{package.folder}: the tarball's SHA-512 differs from the pinned one")
    wanted = {file.path: file for file in package.files}
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        for member in archive.getmembers():
            # npm tarballs hold one top folder (usually `package/`); paths inside it count.
            inner = member.name.split("/", 1)[-1]
            if not member.isfile() or (inner not in wanted and inner not in LICENSE_NAMES):
                continue
            extracted = archive.extractfile(member)
            if extracted is not None:
                found[inner] = extracted.read()
    for path, file in wanted.items():
        if path not in found:
            raise AssetError(f"{package.folder}/{path}: not in the tarball")
        if sri(found[path]) != file.integrity:
            raise AssetError(f"{package.folder}/{path}: its SHA-384 differs from the pinned one")
    return found


def download(
    target: Path,
    *,
    registry: str = DEFAULT_REGISTRY,
    report: Callable[[str], None] = print,
    fetcher: Callable[[str], bytes] = fetch,
) -> None:
    """Put every pinned file into `target/<name>@<version>/`, verified; raises AssetError."""
    # Everything is fetched and verified before the first file is written.
    unpacked: dict[Package, dict[str, bytes]] = {}
    for package in PACKAGES:
        if _present(target, package):
            report(f"{package.folder}: present, verified")
            continue
        url = package.tarball_url(registry)
        unpacked[package] = unpack(package, fetcher(url))
        report(f"{package.folder}: downloaded {url}, verified")
    for package, files in unpacked.items():
        for path, body in files.items():
            _write(target / package.folder / path, body)

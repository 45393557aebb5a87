"""GraphiQL: pinned, verified assets, the page's policy, its opening tabs, the download command."""

from __future__ import annotations

import asyncio
import gzip
import html.parser
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from gateway.app import create_app
from gateway.config import Settings
from gateway.graphiql.assets import (
    CDN_URL,
    PACKAGES,
    AssetError,
    load_folder,
    pinned_files,
    sri,
)
from gateway.graphiql.download import download
from tests.support.gateway import Gateway, GatewayFactory
from tests.support.graphiql_assets import downloaded_assets
from tests.support.servers import ServerThread

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "schema" / "examples"


# What this module pins is the app's behaviour, not the server's: no socket needed.
pytestmark = pytest.mark.gateway("in_process")


class PageParts(html.parser.HTMLParser):
    """The <script>, <link> and config of a GraphiQL page."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.styles: list[dict[str, str | None]] = []
        self.inline: list[str] = []
        self._in_script: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script":
            self._in_script = attributes
            if attributes.get("src"):
                self.scripts.append(attributes)
        elif tag == "link" and attributes.get("rel") == "stylesheet":
            self.styles.append(attributes)

    def handle_data(self, data: str) -> None:
        if self._in_script is not None and data.strip():
            self.inline.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = None


def page_of(gateway: Gateway) -> tuple[httpx.Response, PageParts]:
    response = gateway.http.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    parts = PageParts()
    parts.feed(response.text)
    return response, parts


def config_of(parts: PageParts) -> dict[str, object]:
    (config,) = parts.inline
    loaded: dict[str, object] = json.loads(config)
    return loaded


@pytest.mark.slow
def test_download_fetches_the_pinned_files_and_a_second_run_reuses_them() -> None:
    folder = downloaded_assets()
    for name, file in pinned_files():
        assert sri((folder / name).read_bytes()) == file.integrity
        # Readable by whichever user the gateway runs as (an image's non-root user).
        assert (folder / name).stat().st_mode & 0o444 == 0o444
    again = subprocess.run(
        [sys.executable, "-m", "gateway", "graphiql-assets", "download", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert again.returncode == 0
    assert again.stdout.count("present, verified") == len(PACKAGES)


@pytest.mark.slow
def test_a_tarball_that_differs_from_its_pinned_hash_is_refused_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    # A registry mirror that serves a well-formed tarball with other bytes.
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        body = b"alert('not react')"
        member = tarfile.TarInfo("package/umd/react.production.min.js")
        member.size = len(body)
        tar.addfile(member, io.BytesIO(body))
    tarball = archive.getvalue()

    async def any_tarball(request: object) -> Response:
        return Response(tarball, media_type="application/octet-stream")

    mirror = ServerThread(
        Starlette(routes=[Route("/{path:path}", any_tarball)]), lifespan="off"
    ).start()
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway",
                "graphiql-assets",
                "download",
                str(tmp_path / "assets"),
                "--registry",
                mirror.url,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
    finally:
        mirror.stop()
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "pcs-gateway graphiql-assets: react@18.3.1: "
        "the tarball's SHA-512 differs from the pinned one"
    ]
    assert not (tmp_path / "assets").exists()


def test_an_unreachable_registry_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(AssetError, match=r"cannot reach the registry"):
        download(tmp_path, registry="http://127.0.0.1:9", report=lambda line: None)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_page_loads_only_from_its_own_origin_with_integrity_under_a_strict_csp(
    start_gateway: GatewayFactory,
) -> None:
    gateway = start_gateway(demo=True, graphiql_assets_dir=downloaded_assets())
    response, parts = page_of(gateway)
    policy = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["style-src"].startswith("'self' 'nonce-")
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "unpkg" not in response.text
    assert response.headers["cache-control"] == "no-store"

    # Scripts and styles are relative to /graphql, each with its integrity hash.
    loaded = [(tag["src"], tag["integrity"]) for tag in parts.scripts] + [
        (tag["href"], tag["integrity"]) for tag in parts.styles
    ]
    assert len(loaded) == len(list(pinned_files())) + 2
    for url, integrity in loaded:
        assert url is not None and url.startswith("graphql/assets/")
        asset = gateway.http.get("/" + url, headers={"accept-encoding": "gzip"})
        assert asset.status_code == 200
        assert sri(asset.content) == integrity
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert asset.headers["content-encoding"] == "gzip"
        assert asset.headers["content-type"].startswith(("text/javascript", "text/css"))
        again = gateway.http.get("/" + url, headers={"if-none-match": asset.headers["etag"]})
        assert again.status_code == 304
    # Only the page's own script carries the nonce (for the style elements GraphiQL adds).
    nonce = directives["style-src"].split("'nonce-")[1].split("'")[0]
    assert [tag["nonce"] for tag in parts.scripts if tag.get("nonce")] == [nonce]
    # Each page gets its own nonce.
    assert nonce not in page_of(gateway)[0].headers["content-security-policy"]


@pytest.mark.slow
def test_unknown_assets_are_not_found(start_gateway: GatewayFactory) -> None:
    gateway = start_gateway(graphiql_assets_dir=downloaded_assets())
    for path in ("/graphql/assets/react@18.3.1/LICENSE", "/graphql/assets/../../etc/passwd"):
        assert gateway.http.get(path).status_code == 404


def test_without_local_assets_the_page_uses_the_cdn_and_the_log_says_so(
    start_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="gateway.app")
    gateway = start_gateway()
    assert any("GraphiQL" in r.getMessage() and CDN_URL in r.getMessage() for r in caplog.records)
    response, parts = page_of(gateway)
    directives = dict(
        d.strip().split(" ", 1) for d in response.headers["content-security-policy"].split(";")
    )
    assert directives["script-src"] == f"'self' {CDN_URL}"
    assert directives["connect-src"] == "'self'"
    third_party = [tag["src"] for tag in parts.scripts if not tag.get("nonce")]
    assert third_party == [f"{CDN_URL}/{name}" for name, _ in pinned_files() if name.endswith("js")]
    assert all(tag["integrity"] for tag in parts.scripts + parts.styles)


@pytest.mark.slow
def test_an_altered_assets_folder_stops_start_up_naming_the_setting_and_file(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "assets"
    shutil.copytree(downloaded_assets(), folder)
    altered = folder / "graphiql@3.9.0" / "graphiql.min.js"
    altered.write_bytes(altered.read_bytes() + b"\n// changed")
    app = create_app(Settings(demo=True, graphiql_assets_dir=folder))

    async def start() -> None:
        async with app.router.lifespan_context(app):
            pass

    with pytest.raises(AssetError) as raised:
        asyncio.run(start())
    assert str(raised.value).startswith(
        "PCS_GATEWAY_GRAPHIQL_ASSETS_DIR: graphiql@3.9.0/graphiql.min.js: "
        "its SHA-384 differs from the pinned one"
    )


def test_the_page_opens_with_a_demo_query_then_every_example(
    start_gateway: GatewayFactory,
) -> None:
    gateway = start_gateway(demo=True)
    config = config_of(page_of(gateway)[1])
    tabs = config["tabs"]
    assert isinstance(tabs, list)
    assert 'cluster(identifier: "demo-full")' in tabs[0]["query"]
    examples = sorted(EXAMPLES.glob("*.graphql"))
    assert [tab["query"] for tab in tabs[1:]] == [path.read_text() for path in examples]
    # The opening query runs as it stands.
    answer = gateway.query(tabs[0]["query"])
    assert answer["data"]["cluster"]["name"] == "demo-full"


def test_outside_demo_the_opening_query_asks_for_an_identifier(
    start_gateway: GatewayFactory,
) -> None:
    config = config_of(page_of(start_gateway())[1])
    first = config["tabs"][0]  # type: ignore[index]
    assert "$identifier: String!" in first["query"]
    assert json.loads(first["variables"]) == {"identifier": "my-cluster"}


def test_the_header_editor_starts_with_the_configured_headers(
    start_gateway: GatewayFactory,
) -> None:
    gateway = start_gateway(graphiql_default_headers={"X-API-Key": ""})
    config = config_of(page_of(gateway)[1])
    assert json.loads(str(config["headers"])) == {"X-API-Key": ""}
    assert config["showHeaders"] is True
    assert all(json.loads(tab["headers"]) == {"X-API-Key": ""} for tab in config["tabs"])  # type: ignore[attr-defined]


def test_config_cannot_break_out_of_its_script_block(start_gateway: GatewayFactory) -> None:
    gateway = start_gateway(graphiql_default_headers={"X-Note": "</script><script>alert(1)"})
    response, parts = page_of(gateway)
    assert "</script><script>alert(1)" not in response.text
    assert json.loads(str(config_of(parts)["headers"])) == {"X-Note": "</script><script>alert(1)"}


@pytest.mark.slow
def test_graphiql_is_off_in_production(start_gateway: GatewayFactory) -> None:
    gateway = start_gateway(
        environment="production",
        api_keys="graphiql-test-key-0123",
        graphiql_assets_dir=downloaded_assets(),
    )
    assert gateway.http.get("/graphql", headers={"accept": "text/html"}).status_code == 404
    name = next(iter(dict(pinned_files())))
    assert gateway.http.get(f"/graphql/assets/{name}").status_code == 404
    # The API itself is unchanged.
    answer = gateway.query(
        '{ cluster(identifier: "demo-active") { name } }',
        headers={"x-api-key": "graphiql-test-key-0123"},
    )
    assert answer["data"] == {"cluster": {"name": "demo-active"}}


@pytest.mark.slow
def test_the_gzip_body_is_the_same_file() -> None:
    folder = downloaded_assets()
    for name, asset in load_folder(folder).items():
        assert gzip.decompress(asset.gzipped) == (folder / name).read_bytes()


@pytest.mark.slow
def test_serve_with_a_missing_assets_folder_exits_2_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    env = {**os.environ, "PCS_GATEWAY_GRAPHIQL_ASSETS_DIR": str(missing)}
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--demo", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"pcs-gateway: PCS_GATEWAY_GRAPHIQL_ASSETS_DIR: {missing}: not a folder; "
        f"run `pcs-gateway graphiql-assets download {missing}`"
    ]

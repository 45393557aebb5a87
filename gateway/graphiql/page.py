"""The GraphiQL page: HTML under a strict Content-Security-Policy, and the assets it loads."""

from __future__ import annotations

import hashlib
import html
import json
import secrets
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from gateway.graphiql.assets import CDN_URL, Asset, AssetError, load_folder, pinned_files
from gateway.graphiql.examples import Tab, opening_tabs

#: Pinned files never change under their URL (it holds their version): cache for a year.
IMMUTABLE = "public, max-age=31536000, immutable"
ASSETS_SETTING = "PCS_GATEWAY_GRAPHIQL_ASSETS_DIR"
OWN_FILES = ("page.css", "page.js")

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>pcs-gateway · GraphiQL</title>
<link rel="icon" href="data:,">
{styles}
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<script id="graphiql-config" type="application/json">{config}</script>
{scripts}
</body>
</html>
"""


def _json_for_html(value: object) -> str:
    """JSON that cannot end the <script> data block it sits in."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@dataclass(frozen=True)
class GraphiQLPage:
    """GraphiQL with the explorer plugin, served from the gateway's own origin when it can."""

    #: Served under `assets/`: the pinned bundles when local, and the page's own script and style.
    assets: dict[str, Asset]
    local: bool
    tabs: list[Tab]
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        assets_dir: Path | None,
        *,
        demo: bool = False,
        headers: dict[str, str] | None = None,
        examples: Path | None = None,
    ) -> GraphiQLPage:
        """The page, the bundles of `assets_dir` verified; AssetError names a bad file."""
        assets: dict[str, Asset] = {}
        if assets_dir is not None:
            try:
                assets = load_folder(assets_dir)
            except AssetError as exc:
                raise AssetError(
                    f"{ASSETS_SETTING}: {exc}; run `pcs-gateway graphiql-assets download "
                    f"{assets_dir}`"
                ) from None
        static = resources.files("gateway.graphiql") / "static"
        for name in OWN_FILES:
            body = (static / name).read_bytes()
            stem, suffix = name.rsplit(".", 1)
            # The content hash in the name lets these be cached as long as the bundles.
            digest = hashlib.sha256(body).hexdigest()[:12]
            assets[f"pcs-gateway/{stem}.{digest}.{suffix}"] = Asset.of(name, body)
        return cls(
            assets=assets,
            local=assets_dir is not None,
            tabs=opening_tabs(demo, examples),
            headers=dict(headers or {}),
        )

    def describe(self) -> str:
        """One line for the start-up log: where the browser gets GraphiQL from."""
        if self.local:
            return "GraphiQL at /graphql with local assets (pinned, verified)"
        return (
            f"GraphiQL at /graphql loads its scripts and styles from {CDN_URL}: "
            f"set {ASSETS_SETTING} (see `pcs-gateway graphiql-assets download`) for "
            "networks without a route to it"
        )

    def content_security_policy(self, nonce: str) -> str:
        """Only this origin for scripts, styles and connections (and the CDN when not local)."""
        cdn = "" if self.local else f" {CDN_URL}"
        return "; ".join(
            (
                "default-src 'none'",
                f"script-src 'self'{cdn}",
                f"style-src 'self' 'nonce-{nonce}'{cdn}",
                "connect-src 'self'",
                "font-src 'self' data:",
                "img-src 'self' data:",
                "base-uri 'none'",
                "form-action 'none'",
                "frame-ancestors 'none'",
            )
        )

    def _tags(self, base: str, nonce: str) -> tuple[list[str], list[str]]:
        """The <link> and <script> elements, in load order, each with its integrity hash."""
        links: list[str] = []
        scripts: list[str] = []

        def add(href: str, integrity: str, own: bool) -> None:
            attributes = f'integrity="{integrity}" crossorigin="anonymous"'
            if own:
                attributes += f' nonce="{nonce}"'
            if href.endswith(".css"):
                links.append(f'<link rel="stylesheet" href="{html.escape(href)}" {attributes}>')
            else:
                scripts.append(f'<script src="{html.escape(href)}" {attributes}></script>')

        for name, file in pinned_files():
            add(base + name if self.local else f"{CDN_URL}/{name}", file.integrity, own=False)
        for name, asset in self.assets.items():
            if name.startswith("pcs-gateway/"):
                add(base + name, asset.integrity, own=True)
        return links, scripts

    def render(self, request: Request) -> Response:
        """The page for one request, with a fresh nonce in its policy."""
        nonce = secrets.token_urlsafe(18)
        # Relative to the GraphQL path, so a proxy that mounts the gateway under a prefix works.
        base = PurePosixPath(request.url.path).name + "/assets/"
        styles, scripts = self._tags(base, nonce)
        headers_text = json.dumps(self.headers, indent=2) if self.headers else ""
        config = {
            "tabs": [tab.as_graphiql(headers_text) for tab in self.tabs],
            "headers": headers_text,
            "showHeaders": bool(self.headers),
            "storagePrefix": "pcs-gateway:" + self._tabs_digest() + ":",
        }
        body = PAGE.format(
            styles="\n".join(styles),
            scripts="\n".join(scripts),
            config=_json_for_html(config),
        )
        return HTMLResponse(
            body,
            headers={
                "Content-Security-Policy": self.content_security_policy(nonce),
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )

    def _tabs_digest(self) -> str:
        text = json.dumps([[t.query, t.variables] for t in self.tabs])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def asset(self, request: Request) -> Response:
        """One file under `assets/`: gzip when the browser takes it, 304 when it has it."""
        asset = self.assets.get(request.path_params.get("path", ""))
        if asset is None:
            return PlainTextResponse("Not Found", status_code=404)
        headers = {
            "Cache-Control": IMMUTABLE,
            "ETag": asset.etag,
            "Vary": "Accept-Encoding",
            "X-Content-Type-Options": "nosniff",
            "Cross-Origin-Resource-Policy": "same-origin",
        }
        if asset.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        body = asset.body
        if "gzip" in request.headers.get("accept-encoding", ""):
            body = asset.gzipped
            headers["Content-Encoding"] = "gzip"
        return Response(body, media_type=asset.content_type, headers=headers)

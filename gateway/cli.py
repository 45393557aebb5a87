"""The `pcs-gateway` command: serve, emulator, export-schema, graphiql-assets."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import uvicorn

from gateway.config import SettingsError, load_settings


def _serve(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {}
    if args.host is not None:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if args.demo:
        overrides["demo"] = True
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        print(f"pcs-gateway: {exc}", file=sys.stderr)
        return 2
    if settings.graphiql_enabled and settings.graphiql_assets_dir is not None:
        # Checked before listening, so a bad folder is one line, not a start-up traceback.
        from gateway.graphiql import AssetError, GraphiQLPage

        try:
            GraphiQLPage.load(settings.graphiql_assets_dir)
        except AssetError as exc:
            print(f"pcs-gateway: {exc}", file=sys.stderr)
            return 2
    from gateway.app import create_app
    from gateway.server import serve

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    return serve(
        app,
        app.state.gateway,
        host=settings.host,
        port=settings.port,
        drain_seconds=settings.drain_seconds,
    )


def _emulator(args: argparse.Namespace) -> int:
    from gateway.emulator.app import create_emulator
    from gateway.emulator.faults import FaultPlanError

    try:
        app = create_emulator()
    except FaultPlanError as exc:
        print(f"pcs-gateway emulator: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def _export_schema(args: argparse.Namespace) -> int:
    from gateway.graphql.schema import export_sdl

    sys.stdout.write(export_sdl())
    return 0


def _graphiql_assets_download(args: argparse.Namespace) -> int:
    from gateway.graphiql.assets import AssetError
    from gateway.graphiql.download import download

    try:
        download(Path(args.dir), registry=args.registry)
    except AssetError as exc:
        print(f"pcs-gateway graphiql-assets: {exc}", file=sys.stderr)
        return 1
    print(f"GraphiQL assets ready in {args.dir}: set PCS_GATEWAY_GRAPHIQL_ASSETS_DIR={args.dir}")
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line of DESIGN.md."""
    root = argparse.ArgumentParser(
        prog="pcs-gateway", description="GraphQL gateway in front of AWS PCS."
    )
    commands = root.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--host", help="listen address (PCS_GATEWAY_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (PCS_GATEWAY_PORT, default 8000)")
    serve.add_argument("--demo", action="store_true", help="answer from the built-in PCS emulator")
    serve.set_defaults(run=_serve)
    emulator = commands.add_parser("emulator", help="run the PCS emulator alone")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=4566)
    emulator.set_defaults(run=_emulator)
    export = commands.add_parser("export-schema", help="print the GraphQL SDL")
    export.set_defaults(run=_export_schema)
    assets = commands.add_parser("graphiql-assets", help="GraphiQL's pinned scripts and styles")
    assets_commands = assets.add_subparsers(dest="assets_command", required=True)
    fetch = assets_commands.add_parser(
        "download", help="fetch the pinned npm tarballs, verify them, unpack into DIR"
    )
    fetch.add_argument("dir", metavar="DIR", help="folder for PCS_GATEWAY_GRAPHIQL_ASSETS_DIR")
    fetch.add_argument(
        "--registry",
        default="https://registry.npmjs.org",
        help="npm registry or mirror (default https://registry.npmjs.org)",
    )
    fetch.set_defaults(run=_graphiql_assets_download)
    return root


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())

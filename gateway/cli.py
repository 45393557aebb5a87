"""The `pcs-gateway` command: serve, emulator, export-schema, graphiql-assets."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import uvicorn

from gateway.config import ENV_PREFIX, Settings, SettingsError, load_settings


def _serve(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {}
    if args.host is not None:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if args.demo:
        overrides["demo"] = True
    if args.workers is not None:
        overrides["workers"] = args.workers
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        print(f"pcs-gateway: {exc}", file=sys.stderr)
        return 2
    problem = _observability_problem(settings)
    if problem is not None:
        print(f"pcs-gateway: {problem}", file=sys.stderr)
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
    from gateway.http.server import ConnectionLimits, limited_protocol, serve
    from gateway.observe import logs

    logs.configure(settings)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": logs.logging_config(settings),
        "log_level": settings.log_level,
        "access_log": False,  # the gateway writes its own line per request
        "proxy_headers": False,
        # WebSocket pings keep subscription sockets open through proxies and find dead peers.
        "ws_ping_interval": settings.live_keepalive_seconds,
        "ws_ping_timeout": settings.live_keepalive_seconds,
    }
    limits = ConnectionLimits(
        max_header_bytes=settings.max_header_bytes,
        header_timeout_seconds=settings.header_timeout_seconds,
        body_timeout_seconds=settings.body_timeout_seconds,
        keep_alive_seconds=settings.keep_alive_seconds,
    )
    if settings.workers == 1:
        try:
            app = create_app(settings)
        except SettingsError as exc:  # a trusted-documents manifest that does not load
            print(f"pcs-gateway: {exc}", file=sys.stderr)
            return 2
        return serve(
            app,
            app.state.gateway,
            drain_seconds=settings.drain_seconds,
            limits=limits,
            **options,
        )
    # Each worker reads its settings from the environment: the options given here go there.
    for name, value in overrides.items():
        os.environ[f"{ENV_PREFIX}{name.upper()}"] = str(value)
    uvicorn.run(
        "gateway.cli:worker_app",
        factory=True,
        workers=settings.workers,
        timeout_graceful_shutdown=int(settings.drain_seconds),
        http=limited_protocol(limits),
        **options,
    )
    return 0


def worker_app() -> Any:
    """The app one worker of `serve --workers N` runs, from the `PCS_GATEWAY_*` variables."""
    from gateway.app import create_app

    return create_app(load_settings())


def _observability_problem(settings: Settings) -> str | None:
    """A one-line reason the metrics folder or the `OTEL_*` settings cannot work, or None."""
    from gateway.observe.metrics import MULTIPROCESS_VARIABLE
    from gateway.observe.tracing import TracingError, check_environment

    try:
        check_environment()
    except TracingError as exc:
        return str(exc)
    folder = os.environ.get(MULTIPROCESS_VARIABLE)
    if not folder:
        if settings.workers > 1:
            return (
                f"{ENV_PREFIX}WORKERS: more than one worker needs {MULTIPROCESS_VARIABLE} "
                "(a folder the workers share for /metrics)"
            )
        return None
    path = Path(folder)
    if not path.is_dir() or not os.access(path, os.W_OK):
        return f"{MULTIPROCESS_VARIABLE}: not a writable folder"
    # Values of an earlier run would be added to this one's: start from nothing.
    for stale in path.glob("*.db"):
        stale.unlink()
    return None


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
    serve.add_argument(
        "--workers", type=int, help="worker processes (PCS_GATEWAY_WORKERS, default 1)"
    )
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

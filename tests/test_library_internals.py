"""Library internals the gateway overrides are still where it expects them.

The gateway subclasses uvicorn's server (listen first, drain on stop), aiocache's memory
backend (a bound on entries) and Strawberry's ASGI view. pyproject.toml caps those
libraries below their next minor release; these tests say which method moved when a newer
release is tried.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable

import cross_web.exceptions
import pytest
import uvicorn
from aiocache import SimpleMemoryCache
from strawberry.asgi import GraphQL
from strawberry.http import async_base_view

import gateway.app
from gateway.http.server import GatewayServer, _LifespanLater
from gateway.service.store import BoundedMemoryCache, CacheStats

#: Methods of a library class the gateway's subclass replaces, by library.
OVERRIDES: dict[str, tuple[type, type, frozenset[str]]] = {
    "uvicorn": (
        uvicorn.Server,
        GatewayServer,
        frozenset({"__init__", "startup", "handle_exit", "capture_signals", "shutdown"}),
    ),
    "aiocache": (
        SimpleMemoryCache,
        BoundedMemoryCache,
        frozenset(
            {"__init__", "_get", "_multi_get", "_set", "_multi_set", "_exists", "_delete", "_clear"}
        ),
    ),
}


def _gateway_view() -> type:
    """The gateway's subclass of Strawberry's ASGI view, wherever the gateway defines it."""
    assert gateway.app is not None  # importing the app defines the view
    (view,) = [cls for cls in GraphQL.__subclasses__() if cls.__module__.startswith("gateway.")]
    return view


def _parameters(function: Callable[..., object]) -> list[tuple[str, object]]:
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]


def _own_functions(cls: type) -> Iterable[str]:
    return (name for name, value in vars(cls).items() if inspect.isfunction(value))


def _check_overrides(library: str, base: type, subclass: type, expected: frozenset[str]) -> None:
    overriding = {name for name in _own_functions(subclass) if hasattr(base, name)}
    assert overriding <= expected, (
        f"{subclass.__qualname__} now overrides {sorted(overriding - expected)} of "
        f"{library} {base.__qualname__}: list them here so a {library} upgrade checks them"
    )
    for name in sorted(expected):
        assert name in vars(subclass), f"{subclass.__qualname__}.{name} is gone: update this list"
        original = getattr(base, name, None)
        assert original is not None, (
            f"{library} {base.__qualname__}.{name} no longer exists: the gateway's "
            f"{subclass.__qualname__}.{name} overrides nothing and is never called"
        )
        if name == "__init__":
            continue  # constructors of their own: they call the base's with its keywords
        assert _parameters(vars(subclass)[name]) == _parameters(original), (
            f"{library} {base.__qualname__}.{name} changed its parameters to "
            f"{inspect.signature(original)}; the gateway's {subclass.__qualname__}.{name} "
            f"has {inspect.signature(vars(subclass)[name])}"
        )


@pytest.mark.parametrize("library", sorted(OVERRIDES))
def test_overridden_methods_keep_their_names_and_parameters(library: str) -> None:
    base, subclass, expected = OVERRIDES[library]
    _check_overrides(library, base, subclass, expected)


def test_strawberry_view_hooks_keep_their_names_and_parameters() -> None:
    expected = frozenset(
        {
            "__init__",
            "__call__",
            "get_context",
            "should_render_graphql_ide",
            "render_graphql_ide",
            "encode_json",
            "decode_json",
            "parse_http_body",
            "parse_query_params",
            "process_result",
            "create_response",
        }
    )
    _check_overrides("strawberry", GraphQL, _gateway_view(), expected)
    # Called, not overridden: the view runs a request itself to turn refusals into documents.
    assert [name for name, _ in _parameters(GraphQL.run)][:2] == ["self", "request"], (
        f"strawberry GraphQL.run changed: {inspect.signature(GraphQL.run)}"
    )


def test_strawberry_refuses_requests_with_the_exception_the_gateway_catches() -> None:
    raised = getattr(async_base_view, "HTTPException", None)
    assert raised is cross_web.exceptions.HTTPException, (
        "strawberry's HTTP view no longer raises cross_web.exceptions.HTTPException"
    )


def test_uvicorn_startup_reads_of_its_lifespan_only_what_the_stand_in_has() -> None:
    # GatewayServer.startup swaps in _LifespanLater while uvicorn's startup runs.
    source = inspect.getsource(uvicorn.Server.startup)
    used = set(re.findall(r"self\.lifespan\.(\w+)", source))
    provided = {"startup", "shutdown", "should_exit", "state"}
    assert used, "uvicorn Server.startup no longer starts its lifespan"
    assert used <= provided, f"uvicorn Server.startup now reads lifespan.{sorted(used - provided)}"
    stand_in = _LifespanLater(type("Lifespan", (), {"state": {}})())
    assert all(hasattr(stand_in, name) for name in used)
    assert "self.servers" in source, "uvicorn Server.startup no longer keeps self.servers"


def test_uvicorn_server_state_has_what_the_drain_reads() -> None:
    server = uvicorn.Server(uvicorn.Config(app=None))
    for name in ("server_state", "started", "should_exit", "force_exit"):
        assert hasattr(server, name), f"uvicorn Server has no attribute {name} any more"
    for name in ("tasks", "connections"):
        assert isinstance(getattr(server.server_state, name, None), set), (
            f"uvicorn ServerState.{name} is no longer a set"
        )
    serve = inspect.getsource(uvicorn.Server._serve)
    for call in ("self.startup(", "self.main_loop(", "self.shutdown(", "lifespan_class("):
        assert call in serve, f"uvicorn Server._serve no longer calls {call}...)"


async def test_aiocache_public_methods_reach_the_bounded_backend() -> None:
    stats = CacheStats()
    backend = BoundedMemoryCache(max_entries=2, stats=stats, timeout=None)
    await backend.set("a", b"1")
    await backend.multi_set([("b", b"2"), ("c", b"3")])
    assert len(backend) == 2
    assert stats.evictions == 1
    assert await backend.get("a") is None
    assert await backend.multi_get(["b", "c"]) == [b"2", b"3"]
    assert await backend.exists("c") is True
    assert await backend.delete("c") == 1
    await backend.clear()
    assert len(backend) == 0

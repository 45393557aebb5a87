"""The answer cache's timing on a clock the test moves: freshness, ages, expiry, max-age."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.context import AnswerFacts, Caller, RequestContext
from gateway.http.answer_cache import AnswerCache
from tests.support.clock import FakeClock

QUERY = {"query": '{ cluster(identifier: "c1") { freshness { ageSeconds } } }'}
FETCHED_AGO = 2.0


class Upstream:
    """The layers behind the cache: one answer with an age, counted, with the facts it learnt."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls = 0
        self.fresh_for = 30.0
        self.caller: Caller | None = None
        self.cache_control: str | None = None

    async def graphql(self, request: Request) -> Response:
        self.calls += 1
        fetched_at = self.clock.now - FETCHED_AGO
        body = {"data": {"cluster": {"freshness": {"ageSeconds": FETCHED_AGO}}}}
        context = RequestContext.of(request.scope)
        context.facts = AnswerFacts(
            reusable=True,
            fresh_until=self.clock.now + self.fresh_for,
            resources={"c1": fetched_at},
            ages=[("ageSeconds", fetched_at, FETCHED_AGO)],
        )
        if self.caller is not None:
            context.caller = self.caller
        headers = {"cache-control": self.cache_control} if self.cache_control else {}
        return Response(orjson.dumps(body), media_type="application/json", headers=headers)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def upstream(clock: FakeClock) -> Upstream:
    return Upstream(clock)


@pytest.fixture
async def client(clock: FakeClock, upstream: Upstream) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=[Route("/graphql", upstream.graphql, methods=["POST"])])
    cache = AnswerCache(app, clock=clock)
    transport = httpx.ASGITransport(app=cache)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http


async def ask(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post("/graphql", json=QUERY)


async def test_an_answer_is_reused_while_its_clusters_are_fresh_then_rebuilt(
    client: httpx.AsyncClient, clock: FakeClock, upstream: Upstream
) -> None:
    await ask(client)
    clock.advance(29.9)
    await ask(client)
    assert upstream.calls == 1
    clock.advance(0.2)
    await ask(client)
    assert upstream.calls == 2


async def test_a_reused_answer_states_its_age_at_the_time_it_is_sent(
    client: httpx.AsyncClient, clock: FakeClock, upstream: Upstream
) -> None:
    first = await ask(client)
    assert first.json()["data"]["cluster"]["freshness"]["ageSeconds"] == FETCHED_AGO
    clock.advance(5)
    again = await ask(client)
    assert upstream.calls == 1
    assert again.json()["data"]["cluster"]["freshness"]["ageSeconds"] == FETCHED_AGO + 5
    assert int(again.headers["content-length"]) == len(again.content)


async def test_an_answer_is_not_served_past_the_callers_authentication(
    client: httpx.AsyncClient, clock: FakeClock, upstream: Upstream
) -> None:
    upstream.caller = Caller(
        partition="alice", expires_at=clock.now + 10, subject="alice", may_read_secrets=False
    )
    await ask(client)
    clock.advance(9.9)
    await ask(client)
    assert upstream.calls == 1
    clock.advance(0.2)
    await ask(client)
    assert upstream.calls == 2


async def test_a_reused_answer_restates_max_age_as_what_is_left(
    client: httpx.AsyncClient, clock: FakeClock, upstream: Upstream
) -> None:
    upstream.cache_control = "private, max-age=30"
    await ask(client)
    clock.advance(12)
    again = await ask(client)
    assert upstream.calls == 1
    assert again.headers["cache-control"] == "private, max-age=18"

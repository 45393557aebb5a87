"""Answers shared by authorization partition: never by credential, never across partitions."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from gateway.config import Settings
from gateway.security.authentication import TokenVerifier, partition_of
from tests.support.gateway import Gateway, GatewayFactory, assert_no_leaks
from tests.support.oidc import AUDIENCE, ISSUER, KeySetServer, bearer, mint, oidc_settings
from tests.support.servers import Emulator

SECRETS_SCOPE = "pcs-gateway:secrets"
#: Callers: (key, scopes). Two partitions: with the secrets scope, and without it.
CALLERS = [
    ("reader-key-0000000000000001", ""),
    ("reader-key-0000000000000002", "dashboards"),
    ("reader-key-0000000000000003", "dashboards audit"),
    ("admin-key-00000000000000001", SECRETS_SCOPE),
    ("admin-key-00000000000000002", f"{SECRETS_SCOPE} dashboards"),
]
STATUS = "query($i: String!) { cluster(identifier: $i) { name status } }"
SECRETS = """query($i: String!) { cluster(identifier: $i) {
  name
  slurmConfiguration { authKey { secretArn } jwtAuth { jwtKey { secretArn } } }
} }"""
SECRET_ONLY = (
    "query($i: String!) { cluster(identifier: $i) "
    "{ slurmConfiguration { authKey { secretArn } } } }"
)
QUERIES = [STATUS, SECRETS, SECRET_ONLY]
IDENTIFIERS = ["demo-full", "demo-active"]


def api_keys() -> str:
    return ",".join(f"{key}:{scopes}" if scopes else key for key, scopes in CALLERS)


def post(gateway: Gateway, query: str, identifier: str, headers: dict[str, str]) -> httpx.Response:
    return gateway.http.post(
        "/graphql", json={"query": query, "variables": {"i": identifier}}, headers=headers
    )


def assert_unauthenticated(response: httpx.Response) -> None:
    assert response.status_code == 401
    (error,) = response.json()["errors"]
    assert error["extensions"] == {"code": "UNAUTHENTICATED"}
    assert "data" not in response.json()


def may_read(scopes: str) -> bool:
    return SECRETS_SCOPE in scopes.split()


def test_callers_of_one_partition_share_an_answer_and_no_other_caller_gets_it(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(api_keys=api_keys())
    cache = gateway.app
    reader, other_reader = CALLERS[0][0], CALLERS[1][0]
    admin, other_admin = CALLERS[3][0], CALLERS[4][0]
    first = post(gateway, SECRETS, "demo-full", {"x-api-key": admin})
    assert first.json()["data"]["cluster"]["slurmConfiguration"]["authKey"] is not None
    # Another key with the same authorization: the same bytes, from the cache.
    second = post(gateway, SECRETS, "demo-full", {"x-api-key": other_admin})
    assert second.content == first.content
    assert cache.stats.hits == 1
    # Readers never get it: their answers hide the secret reference, each built afresh.
    for key in (reader, other_reader):
        answer = post(gateway, SECRETS, "demo-full", {"x-api-key": key}).json()
        assert answer["data"]["cluster"]["slurmConfiguration"]["authKey"] is None
        assert answer["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert cache.stats.hits == 1
    # Without credentials, or with a wrong one, not even a held answer comes back.
    assert_unauthenticated(post(gateway, SECRETS, "demo-full", {}))
    assert_unauthenticated(post(gateway, SECRETS, "demo-full", {"x-api-key": "x" * 27}))
    assert cache.stats.hits == 1
    # Readers share their own answers among themselves.
    post(gateway, STATUS, "demo-active", {"x-api-key": reader})
    post(gateway, STATUS, "demo-active", {"x-api-key": other_reader})
    assert cache.stats.hits == 2
    # Two partitions, so at most two entries per operation, whatever the number of keys.
    assert {entry.partition for entry in cache._entries.values()} == {
        partition_of(True),
        partition_of(False),
    }


@pytest.mark.slow
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@seed(20260201)
@given(
    requests=st.lists(
        st.tuples(
            st.integers(0, len(CALLERS)),  # len(CALLERS): no credentials at all
            st.sampled_from(QUERIES),
            st.sampled_from(IDENTIFIERS),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_a_corpus_of_callers_never_receives_another_partitions_answer(
    partitioned: Gateway, requests: list[tuple[int, str, str]]
) -> None:
    for who, query, identifier in requests:
        if who == len(CALLERS):
            assert_unauthenticated(post(partitioned, query, identifier, {}))
            continue
        key, scopes = CALLERS[who]
        response = post(partitioned, query, identifier, {"x-api-key": key})
        assert response.status_code == 200
        answer: dict[str, Any] = response.json()
        if may_read(scopes):
            assert_no_leaks(answer)
            assert "errors" not in answer
            if query != STATUS:
                config = answer["data"]["cluster"]["slurmConfiguration"]
                assert config["authKey"] is not None or identifier != "demo-full"
        else:
            assert_no_leaks(answer)
            if query != STATUS and identifier == "demo-full":
                config = answer["data"]["cluster"]["slurmConfiguration"]
                assert config["authKey"] is None
                assert {error["extensions"]["code"] for error in answer["errors"]} == {"FORBIDDEN"}
    # Every answer held was built for one of the two partitions and keyed on it.
    partitions = {entry.partition for entry in partitioned.app._entries.values()}
    assert partitions <= {partition_of(True), partition_of(False)}


@pytest.fixture
def partitioned(start_gateway: GatewayFactory) -> Gateway:
    return start_gateway(api_keys=api_keys())


def test_a_rate_limited_caller_is_refused_even_what_the_cache_holds(
    start_gateway: GatewayFactory,
) -> None:
    gateway = start_gateway(api_keys=api_keys(), rate_limit="2/minute")
    reader = {"x-api-key": CALLERS[0][0]}
    assert post(gateway, STATUS, "demo-active", reader).status_code == 200
    assert post(gateway, STATUS, "demo-active", reader).status_code == 200
    assert gateway.app.stats.hits == 1
    refused = post(gateway, STATUS, "demo-active", reader)
    assert refused.status_code == 429
    assert refused.json()["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert refused.headers["x-request-id"]
    assert gateway.app.stats.hits == 1
    # Another caller of the same partition has its own budget and gets the shared answer.
    assert post(gateway, STATUS, "demo-active", {"x-api-key": CALLERS[1][0]}).status_code == 200
    assert gateway.app.stats.hits == 2


@pytest.mark.slow
def test_an_expired_token_never_reaches_its_cached_answer(
    start_gateway: GatewayFactory, jwks: KeySetServer
) -> None:
    key = jwks.new_key("k-partition")
    jwks.publish(key)
    gateway = start_gateway(**oidc_settings(jwks, oidc_leeway_seconds=0))
    token = mint(key, exp=int(time.time()) + 2)
    for _ in range(2):
        assert post(gateway, STATUS, "demo-active", bearer(token)).status_code == 200
    assert gateway.app.stats.hits == 1
    time.sleep(max(0.0, int(time.time()) + 2 - time.time()) + 1.1)
    assert_unauthenticated(post(gateway, STATUS, "demo-active", bearer(token)))
    # A fresh token of the same authorization gets the held answer.
    assert post(gateway, STATUS, "demo-active", bearer(mint(key))).status_code == 200
    assert gateway.app.stats.hits == 2


async def test_a_verified_token_is_remembered_by_its_digest_until_it_expires(
    jwks: KeySetServer,
) -> None:
    key = jwks.new_key("k-remember")
    jwks.publish(key)
    now = [time.time()]
    verifier = TokenVerifier(
        Settings(oidc_issuer=ISSUER, oidc_audience=AUDIENCE, oidc_jwks_url=jwks.url),
        clock=lambda: now[0],
    )
    token = mint(key, exp=int(now[0]) + 60)
    first = await verifier.verify(token)
    assert await verifier.verify(token) is first
    assert len(verifier._verified) == 1
    assert token.encode() not in set(verifier._verified)
    # Past its expiry the token is verified again, not answered from memory.
    now[0] += 61
    assert await verifier.verify(token) is not first

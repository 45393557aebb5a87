"""Property-based tests: whatever reaches `/graphql`, no 5xx, no traceback, and it stays up."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc.jwk import ECKey

from tests.support.gateway import Gateway, GatewayFactory, assert_no_leaks
from tests.support.oidc import AUDIENCE, ISSUER, KeySetServer, mint
from tests.support.servers import free_port

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: Pieces of GraphQL: names of the schema, punctuation, keywords, literals.
TOKENS = [
    "{", "}", "(", ")", "[", "]", ":", "!", "=", "$", "...", "@", ",", "|", "&",
    "query", "mutation", "subscription", "fragment", "on", "Query", "Cluster",
    "cluster", "clusters", "identifier", "identifiers", "refresh", "name", "id", "arn",
    "status", "statusRaw", "size", "scheduler", "type", "version", "slurmConfiguration",
    "authKey", "jwtAuth", "jwtKey", "secretArn", "endpoints", "port", "errorInfo",
    "freshness", "ageSeconds", "__typename", "__schema", "__type", "types", "fields",
    "ofType", "include", "skip", "if", "true", "false", "null", "0", "-1", "1e999",
    '"demo-active"', '"demo-full"', '"error-internal"', '"x"', '""', '"\\u0000"',
    "a", "b", "$id", "String", "String!", "[String!]!", "#", "\n", "\"\"\"",
]  # fmt: skip

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)

graphql_like = st.lists(st.sampled_from(TOKENS), max_size=80).map(" ".join)


def selection(depth: int) -> st.SearchStrategy[str]:
    """A selection set over the schema's names, nested up to `depth`, with aliases."""
    leaf = st.sampled_from(["name", "id", "status", "size", "__typename", "port", "bogus"])
    if depth == 0:
        return leaf
    field = st.tuples(
        st.sampled_from(["", "x: ", "y: "]),
        st.sampled_from(["scheduler", "slurmConfiguration", "authKey", "endpoints", "name"]),
        st.lists(selection(depth - 1), min_size=1, max_size=3),
    ).map(lambda t: f"{t[0]}{t[1]} {{ {' '.join(t[2])} }}")
    return leaf | field


documents = st.tuples(
    st.sampled_from(["", "query ", "query Q($id: String!) ", "mutation ", "subscription "]),
    st.lists(
        st.tuples(
            st.sampled_from(["", "a: ", "b: "]),
            st.sampled_from(
                [
                    'cluster(identifier: "demo-active")',
                    "cluster(identifier: $id)",
                    'clusters(identifiers: ["demo-full", "nope", "error-internal"])',
                    "cluster",
                    '__type(name: "Cluster")',
                ]
            ),
            st.lists(selection(3), min_size=1, max_size=4),
        ).map(lambda t: f"{t[0]}{t[1]} {{ {' '.join(t[2])} }}"),
        min_size=1,
        max_size=4,
    ),
).map(lambda t: f"{t[0]}{{ {' '.join(t[1])} }}")


@pytest.fixture
def target(start_gateway: GatewayFactory) -> Iterator[Gateway]:
    gateway = start_gateway(rate_limit="off", pcs_read_timeout_seconds=1)
    yield gateway
    # Whatever was thrown at it, it still serves.
    assert gateway.http.get("/healthz").text == "ok"
    answer = gateway.query('{ cluster(identifier: "demo-active") { name } }')
    assert answer["data"] == {"cluster": {"name": "demo-active"}}


def check(response: httpx.Response) -> None:
    """No server error, no trace of the server's insides, a GraphQL error document or data."""
    assert response.status_code < 500, response.text[:500]
    assert "Traceback" not in response.text
    if response.headers.get("content-type", "").startswith("application/"):
        body: Any = response.json()
        assert_no_leaks(body)
        assert isinstance(body, dict)
        assert "data" in body or "errors" in body
        for error in body.get("errors") or []:
            assert error["extensions"]["code"] != "INTERNAL_SERVER_ERROR", error


@FUZZ
@given(
    body=st.binary(max_size=2048),
    content_type=st.sampled_from(["application/json", "text/plain", ""]),
)
def test_random_bytes(target: Gateway, body: bytes, content_type: str) -> None:
    check(target.http.post("/graphql", content=body, headers={"content-type": content_type}))


@pytest.mark.slow
@FUZZ
@given(payload=json_values)
def test_random_json(target: Gateway, payload: Any) -> None:
    check(
        target.http.post(
            "/graphql",
            content=json.dumps(payload).encode(),
            headers={"content-type": "application/json"},
        )
    )


@pytest.mark.slow
@FUZZ
@given(query=json_values, variables=json_values, name=json_values, extensions=json_values)
def test_random_json_members(
    target: Gateway, query: Any, variables: Any, name: Any, extensions: Any
) -> None:
    payload = {"query": query, "variables": variables, "operationName": name}
    if isinstance(extensions, dict):
        payload["extensions"] = extensions
    check(target.http.post("/graphql", json=payload))


@pytest.mark.slow
@FUZZ
@given(query=graphql_like | documents, identifier=json_values, get=st.booleans())
def test_random_graphql_documents(target: Gateway, query: str, identifier: Any, get: bool) -> None:
    variables = {"id": identifier}
    if get:
        params = {"query": query, "variables": json.dumps(variables)}
        check(target.http.get("/graphql", params=params))
    else:
        check(target.http.post("/graphql", json={"query": query, "variables": variables}))


# Header values as HTTP allows them: printable ASCII, no surrounding spaces.
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300).map(
    str.strip
) | st.lists(st.binary(max_size=60).map(lambda b: b.hex()), max_size=4).map(".".join)


@pytest.fixture
def guarded(start_gateway: GatewayFactory) -> Iterator[Gateway]:
    gateway = start_gateway(
        rate_limit="off",
        api_keys="fuzz-key-0123456789abcdef",
        oidc_issuer="https://idp.example.test/",
        oidc_audience="pcs-gateway",
        # Nothing listens there: keys cannot be fetched, every token is refused.
        oidc_jwks_url=f"http://127.0.0.1:{free_port()}/jwks.json",
    )
    yield gateway
    assert gateway.http.get("/healthz").text == "ok"


@FUZZ
@given(
    api_key=st.none() | header_values,
    authorization=st.none() | header_values.map(lambda v: f"Bearer {v}".strip()) | header_values,
)
def test_random_credentials_are_refused(
    guarded: Gateway, api_key: str | None, authorization: str | None
) -> None:
    headers = {}
    if api_key is not None:
        headers["x-api-key"] = api_key
    if authorization is not None:
        headers["authorization"] = authorization
    response = guarded.http.post("/graphql", json={"query": "{ __typename }"}, headers=headers)
    check(response)
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.fixture(scope="module")
def issuer() -> Iterator[tuple[KeySetServer, ECKey]]:
    server = KeySetServer()
    key = server.new_key("k-fuzz")
    server.publish(key)
    try:
        yield server, key
    finally:
        server.server.stop()


@pytest.fixture
def verifying(start_gateway: GatewayFactory, issuer: tuple[KeySetServer, ECKey]) -> Gateway:
    server, _ = issuer
    return start_gateway(
        rate_limit="off",
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        oidc_jwks_url=server.url,
        oidc_jwks_min_refresh_seconds=60,
    )


@FUZZ
@given(
    header=st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit", "b64"]), json_values)
    | json_values,
    claims=st.dictionaries(
        st.sampled_from(["iss", "aud", "sub", "exp", "nbf", "iat", "scope", "groups"]),
        json_values,
    )
    | json_values,
    signature=st.binary(max_size=80),
    keep_kid=st.booleans(),
)
@pytest.mark.slow
def test_random_tokens_against_a_real_key_set_are_refused(
    verifying: Gateway, header: Any, claims: Any, signature: bytes, keep_kid: bool
) -> None:
    if keep_kid and isinstance(header, dict):
        header = {**header, "kid": "k-fuzz", "alg": "ES256"}
    token = ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)]
    )
    response = verifying.http.post(
        "/graphql", json={"query": "{ __typename }"}, headers={"authorization": f"Bearer {token}"}
    )
    check(response)
    assert response.status_code == 401


def test_a_valid_token_passes_the_fuzzed_gateway(
    verifying: Gateway, issuer: tuple[KeySetServer, ECKey]
) -> None:
    _, key = issuer
    response = verifying.http.post(
        "/graphql",
        json={"query": "{ __typename }"},
        headers={"authorization": f"Bearer {mint(key)}"},
    )
    assert response.json() == {"data": {"__typename": "Query"}}

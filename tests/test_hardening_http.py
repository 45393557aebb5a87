"""Hardening over real HTTP: lenient parsing where HTTP is lenient, browser caches and keys."""

from __future__ import annotations

import json

from tests.support.gateway import GatewayFactory

STATUS = "query($i: String!) { cluster(identifier: $i) { name status } }"
VARIABLES = {"i": "demo-active"}
EXPECTED = {"data": {"cluster": {"name": "demo-active", "status": "ACTIVE"}}}
KEY = "reader-key-0123456789"


def test_a_media_type_in_another_case_is_json(start_gateway: GatewayFactory) -> None:
    gateway = start_gateway()
    for content_type in ("Application/JSON", "APPLICATION/JSON; charset=UTF-8"):
        response = gateway.http.post(
            "/graphql",
            content=json.dumps({"query": STATUS, "variables": VARIABLES}),
            headers={"content-type": content_type},
        )
        assert response.status_code == 200, response.text
        assert response.json() == EXPECTED


def test_null_extensions_are_the_same_request_without_them(
    start_gateway: GatewayFactory,
) -> None:
    gateway = start_gateway()
    variables = json.dumps(VARIABLES)
    by_get = gateway.http.get(
        "/graphql", params={"query": STATUS, "variables": variables, "extensions": "null"}
    )
    assert by_get.status_code == 200, by_get.text
    assert by_get.json() == EXPECTED
    for extensions in (None, {"persistedQuery": None}):
        by_post = gateway.http.post(
            "/graphql", json={"query": STATUS, "variables": VARIABLES, "extensions": extensions}
        )
        assert by_post.status_code == 200, by_post.text
        assert by_post.json() == EXPECTED


def test_a_get_answer_for_a_credential_varies_on_the_credential_headers(
    start_gateway: GatewayFactory,
) -> None:
    gateway = start_gateway(api_keys=KEY)
    params = {"query": STATUS, "variables": json.dumps(VARIABLES)}
    for _ in range(2):  # built, then replayed by the answer cache
        response = gateway.http.get("/graphql", params=params, headers={"x-api-key": KEY})
        assert response.status_code == 200
        assert response.headers["cache-control"].startswith("private, max-age=")
        vary = {part.strip().lower() for part in response.headers["vary"].split(",")}
        assert {"accept", "authorization", "x-api-key"} <= vary

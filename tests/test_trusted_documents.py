"""Trusted documents: a manifest's operations named by id, and safelisting with `only`."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.app import create_app
from gateway.config import Settings, SettingsError, load_settings
from tests.support.gateway import Gateway, GatewayFactory

ROOT = Path(__file__).resolve().parent.parent
FULL = (ROOT / "schema" / "examples" / "cluster-full.graphql").read_text()
STATUS = "query Status($i: String!) { cluster(identifier: $i) { name status } }"
UNLISTED = "query Other($i: String!) { cluster(identifier: $i) { name } }"


def sha256(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


def codegen_manifest(tmp_path: Path) -> Path:
    """The client preset's persisted-documents.json: {hash: document}."""
    path = tmp_path / "persisted-documents.json"
    path.write_bytes(orjson.dumps({sha256(STATUS): STATUS, sha256(FULL): FULL}))
    return path


def apollo_manifest(tmp_path: Path) -> Path:
    path = tmp_path / "persisted-query-manifest.json"
    manifest = {
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": [
            {"id": sha256(STATUS), "name": "Status", "type": "query", "body": STATUS},
        ],
    }
    path.write_bytes(orjson.dumps(manifest))
    return path


def post(gateway: Gateway, body: dict[str, Any]) -> Any:
    return gateway.http.post("/graphql", json=body)


def test_a_listed_document_is_run_by_its_id_as_each_client_sends_it(
    start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gateway = start_gateway(trusted_documents_file=codegen_manifest(tmp_path))
    variables = {"i": "demo-active"}
    expected = {"data": {"cluster": {"name": "demo-active", "status": "ACTIVE"}}}
    digest = sha256(STATUS)
    for body in (
        {"documentId": digest, "variables": variables},
        {"documentId": f"sha256:{digest}", "variables": variables},
        {"id": digest, "variables": variables},
        {
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": digest}},
            "variables": variables,
        },
    ):
        response = post(gateway, body)
        assert response.status_code == 200, body
        assert response.json() == expected
    # Over GET as well.
    response = gateway.http.get(
        "/graphql", params={"documentId": digest, "variables": orjson.dumps(variables).decode()}
    )
    assert response.json() == expected
    # Other documents still run: the manifest alone does not safelist.
    assert post(gateway, {"query": UNLISTED, "variables": variables}).status_code == 200
    # An id the manifest does not list is refused, with the documented code.
    refused = post(gateway, {"documentId": "0" * 64, "variables": variables})
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_IN_LIST"


def test_apollos_manifest_is_read_and_its_hashes_need_no_registration(
    start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gateway = start_gateway(
        trusted_documents_file=apollo_manifest(tmp_path), persisted_queries_max_entries=0
    )
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": sha256(STATUS)}}
    response = gateway.http.get(
        "/graphql",
        params={
            "extensions": orjson.dumps(extensions).decode(),
            "variables": '{"i": "demo-full"}',
        },
    )
    assert response.status_code == 200
    assert response.json()["data"]["cluster"]["name"] == "demo-full"


def test_only_listed_documents_run_when_safelisting(
    start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gateway = start_gateway(
        trusted_documents_file=codegen_manifest(tmp_path), trusted_documents_only=True
    )
    variables = {"i": "demo-active"}
    for body in (
        {"query": UNLISTED, "variables": variables},
        # A listed document changed, even only in its spacing, is another document.
        {"query": STATUS.replace(" {", "{"), "variables": variables},
        # APQ cannot register a new document either.
        {
            "query": UNLISTED,
            "variables": variables,
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256(UNLISTED)}},
        },
    ):
        response = gateway.http.post("/graphql", json=body)
        assert response.status_code == 400
        (error,) = response.json()["errors"]
        assert error["extensions"] == {"code": "PERSISTED_QUERY_NOT_IN_LIST"}
        assert "data" not in response.json()
    assert len(gateway.app.state.gateway.graphql.apq) == 0
    # The listed document runs by id, and by its text.
    assert post(gateway, {"documentId": sha256(STATUS), "variables": variables}).status_code == 200
    assert post(gateway, {"query": STATUS, "variables": variables}).status_code == 200
    metrics = gateway.http.get("/metrics").text
    assert 'pcsgw_graphql_errors_total{code="PERSISTED_QUERY_NOT_IN_LIST"} 3.0' in metrics


def test_without_a_manifest_nothing_changes(gateway: Gateway) -> None:
    refused = post(gateway, {"documentId": sha256(STATUS), "variables": {"i": "demo-active"}})
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    answer = post(gateway, {"query": UNLISTED, "variables": {"i": "demo-active"}})
    assert answer.json() == {"data": {"cluster": {"name": "demo-active"}}}


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (b"[1, 2]", "expected an object"),
        (b"{}", "lists no document"),
        (b'{"abc": 5}', "must be a GraphQL string"),
        (b'{"abc": "query { nope }"}', "document abc: Cannot query field 'nope'"),
        (b'{"abc": "query {"}', "document abc: Syntax Error"),
        (b'{"a b": "query { __typename }"}', "the id must be"),
        (b'{"format": "apollo-persisted-query-manifest", "version": 2}', "only version 1"),
        (b"not json", "cannot read the manifest"),
    ],
)
def test_a_bad_manifest_stops_start_up_with_one_line(
    tmp_path: Path, manifest: bytes, message: str
) -> None:
    path = tmp_path / "manifest.json"
    path.write_bytes(manifest)
    with pytest.raises(SettingsError) as caught:
        create_app(Settings(trusted_documents_file=path))
    text = str(caught.value)
    assert text.startswith("PCS_GATEWAY_TRUSTED_DOCUMENTS_FILE: ")
    assert message in text
    assert "\n" not in text


def test_safelisting_needs_a_manifest() -> None:
    with pytest.raises(SettingsError, match="TRUSTED_DOCUMENTS_ONLY needs"):
        load_settings(trusted_documents_only=True)


def test_a_document_named_by_id_over_get_needs_credentials(
    start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    key = "reader-key-0123456789abcdef"
    gateway = start_gateway(trusted_documents_file=codegen_manifest(tmp_path), api_keys=key)
    params = {"documentId": sha256(STATUS), "variables": '{"i": "demo-active"}'}
    refused = gateway.http.get("/graphql", params=params)
    assert refused.status_code == 401
    assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    answered = gateway.http.get("/graphql", params=params, headers={"x-api-key": key})
    assert answered.json()["data"]["cluster"]["status"] == "ACTIVE"

"""Authentication and field authorization over real HTTP: API keys, OIDC tokens, authKey."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config import SettingsError, load_settings
from tests.support.gateway import Gateway, GatewayFactory, assert_no_leaks
from tests.support.oidc import ISSUER, KeySetServer, bearer, mint, oidc_settings
from tests.support.servers import Emulator

READER_KEY = "reader-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
STATUS = 'query { cluster(identifier: "demo-active") { name status } }'
SECRETS = """query { cluster(identifier: "demo-full") {
  name status
  slurmConfiguration {
    scaleDownIdleTimeInSeconds
    authKey { secretArn secretVersion }
    jwtAuth { jwtKey { secretArn } }
    slurmRest { mode }
  }
} }"""


# What this module pins is the app's behaviour, not the server's: no socket needed.
pytestmark = pytest.mark.gateway("in_process")


def post(gateway: Gateway, query: str, headers: dict[str, str] | None = None) -> httpx.Response:
    response = gateway.http.post("/graphql", json={"query": query}, headers=headers or {})
    assert_no_leaks(response.json())
    return response


def assert_unauthenticated(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"]
    (error,) = response.json()["errors"]
    assert error["extensions"] == {"code": "UNAUTHENTICATED"}
    assert "data" not in response.json()


# --- API keys -------------------------------------------------------------------------


def test_an_api_key_is_accepted_and_a_wrong_or_missing_one_refused(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(api_keys=f"{READER_KEY}, {ADMIN_KEY}:pcs-gateway:secrets")
    for key in (READER_KEY, ADMIN_KEY):
        response = post(gateway, STATUS, {"x-api-key": key})
        assert response.status_code == 200
        assert response.json()["data"] == {"cluster": {"name": "demo-active", "status": "ACTIVE"}}
    for headers in (
        {},
        {"x-api-key": READER_KEY + "x"},
        {"x-api-key": READER_KEY[:-1]},
        {"x-api-key": ""},
        {"authorization": f"Basic {READER_KEY}"},
        {"authorization": f"Bearer {READER_KEY}"},  # OIDC is not configured
    ):
        assert_unauthenticated(post(gateway, STATUS, headers))
    assert emulator.calls() == 1


def test_keys_from_a_file_and_as_digests_are_accepted(
    start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    digest = hashlib.sha256(ADMIN_KEY.encode()).hexdigest()
    keys.write_text(f"# portal\n{READER_KEY}\n\nsha256:{digest}:pcs-gateway:secrets\n")
    gateway = start_gateway(api_keys_file=keys)
    assert post(gateway, STATUS, {"x-api-key": READER_KEY}).status_code == 200
    answer = post(gateway, SECRETS, {"x-api-key": ADMIN_KEY}).json()
    assert answer["data"]["cluster"]["slurmConfiguration"]["authKey"]["secretArn"]
    assert_unauthenticated(post(gateway, STATUS, {"x-api-key": digest}))


def test_public_routes_and_the_graphiql_page_need_no_credentials(
    start_gateway: GatewayFactory,
) -> None:
    gateway = start_gateway(api_keys=READER_KEY, graphiql=True)
    assert gateway.http.get("/healthz").text == "ok"
    assert gateway.http.get("/readyz").status_code == 200
    assert gateway.http.get("/metrics").status_code == 200
    page = gateway.http.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200 and "<html" in page.text.lower()
    # The page's own script and style load without credentials too.
    files = re.findall(r'(?:src|href)="(graphql/assets/[^"]+)"', page.text)
    assert files
    for path in files:
        assert gateway.http.get(f"/{path}").status_code == 200
    # A GET that names an operation is an API call: it needs credentials, HTML or not.
    query = {"query": STATUS}
    assert_unauthenticated(gateway.http.get("/graphql", params=query))
    assert_unauthenticated(
        gateway.http.get("/graphql", params=query, headers={"accept": "text/html"})
    )
    with_key = gateway.http.get("/graphql", params=query, headers={"x-api-key": READER_KEY})
    assert with_key.json()["data"]["cluster"]["name"] == "demo-active"


@pytest.mark.gateway("uvicorn")  # a websocket handshake needs a real server
def test_the_websocket_handshake_is_refused_with_bad_credentials(
    start_gateway: GatewayFactory,
) -> None:
    gateway = start_gateway(api_keys=READER_KEY, websockets=True)
    upgrade = {
        "connection": "Upgrade",
        "upgrade": "websocket",
        "sec-websocket-version": "13",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-protocol": "graphql-transport-ws",
    }
    refused = gateway.http.get("/graphql", headers={**upgrade, "x-api-key": "not-a-key"})
    assert refused.status_code == 403
    accepted = gateway.http.get("/graphql", headers={**upgrade, "x-api-key": READER_KEY})
    assert accepted.status_code == 101
    # Without headers (a browser cannot set them) the credentials come in connection_init;
    # tests/test_live_auth.py closes those without valid ones with 4401.
    pending = gateway.http.get("/graphql", headers=upgrade)
    assert pending.status_code == 101


# --- OIDC -------------------------------------------------------------------------------


def test_a_valid_token_is_accepted(start_gateway: GatewayFactory, jwks: KeySetServer) -> None:
    key = jwks.new_key("k-valid")
    jwks.publish(key)
    gateway = start_gateway(**oidc_settings(jwks))
    response = post(gateway, STATUS, bearer(mint(key)))
    assert response.status_code == 200
    assert response.json()["data"]["cluster"]["status"] == "ACTIVE"


@pytest.mark.parametrize(
    ("case", "claims"),
    [
        # Times are seconds from now.
        ("expired", {"iat": -600, "exp": -120}),
        ("not-yet-valid", {"nbf": 600}),
        ("wrong-audience", {"aud": "another-service"}),
        ("wrong-issuer", {"iss": "https://evil.example.test/"}),
        ("no-expiry", {"exp": None}),
        ("no-subject", {"sub": None}),
    ],
)
def test_a_token_with_bad_claims_is_refused(
    start_gateway: GatewayFactory,
    jwks: KeySetServer,
    emulator: Emulator,
    case: str,
    claims: dict[str, Any],
) -> None:
    key = jwks.new_key(f"k-{case}")
    jwks.publish(key)
    gateway = start_gateway(**oidc_settings(jwks))
    now = int(time.time())
    for name in ("iat", "exp", "nbf"):
        if isinstance(claims.get(name), int):
            claims = {**claims, name: now + claims[name]}
    response = post(gateway, STATUS, bearer(mint(key, **claims)))
    assert_unauthenticated(response)
    if case == "expired":
        assert "expired" in response.json()["errors"][0]["message"]
    assert emulator.calls() == 0


def test_a_token_with_a_bad_signature_is_refused(
    start_gateway: GatewayFactory, jwks: KeySetServer
) -> None:
    key = jwks.new_key("k-sig")
    jwks.publish(key)
    gateway = start_gateway(**oidc_settings(jwks))
    token = mint(key)
    header, _, signature = token.split(".")
    # Another key under the same kid: the signature does not verify.
    forged = mint(jwks.new_key("k-sig"))
    assert_unauthenticated(post(gateway, STATUS, bearer(forged)))
    # The claims changed after signing.
    other = mint(key, sub="mallory").split(".")[1]
    assert_unauthenticated(post(gateway, STATUS, bearer(f"{header}.{other}.{signature}")))
    # An unsigned token.
    unsigned = (
        ".".join(
            base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")
            for part in ({"alg": "none", "kid": "k-sig"}, {"iss": ISSUER, "sub": "x"})
        )
        + "."
    )
    assert_unauthenticated(post(gateway, STATUS, bearer(unsigned)))
    assert_unauthenticated(post(gateway, STATUS, bearer("not.a.token")))
    assert post(gateway, STATUS, bearer(token)).status_code == 200


@pytest.mark.slow
def test_a_rotated_key_is_fetched_and_an_unknown_key_id_refused(
    start_gateway: GatewayFactory, jwks: KeySetServer
) -> None:
    interval = 0.5
    old, new = jwks.new_key("k-old"), jwks.new_key("k-new")
    jwks.publish(old)
    gateway = start_gateway(**oidc_settings(jwks, oidc_jwks_min_refresh_seconds=interval))
    assert post(gateway, STATUS, bearer(mint(old))).status_code == 200
    fetched = jwks.fetches
    # The issuer rotates: tokens now name a key the gateway has not seen.
    jwks.publish(old, new)
    time.sleep(interval + 0.1)
    assert post(gateway, STATUS, bearer(mint(new))).status_code == 200
    assert jwks.fetches == fetched + 1
    # A key id the issuer never published is refused, after one more look.
    time.sleep(interval + 0.1)
    stranger = jwks.new_key("k-stranger")
    started = time.monotonic()
    assert_unauthenticated(post(gateway, STATUS, bearer(mint(stranger))))
    assert jwks.fetches == fetched + 2
    # More unknown key ids: at most one fetch per interval, however many arrive.
    for _ in range(10):
        assert_unauthenticated(post(gateway, STATUS, bearer(mint(stranger))))
    intervals = int((time.monotonic() - started) / interval)
    assert fetched + 2 <= jwks.fetches <= fetched + 2 + intervals
    # The issuer retires the old key: once the gateway looks again, its tokens stop working.
    jwks.publish(new)
    time.sleep(interval + 0.1)
    assert_unauthenticated(post(gateway, STATUS, bearer(mint(stranger))))
    assert_unauthenticated(post(gateway, STATUS, bearer(mint(old))))
    assert post(gateway, STATUS, bearer(mint(new))).status_code == 200


def test_keys_held_keep_working_while_the_issuer_fails(
    start_gateway: GatewayFactory, jwks: KeySetServer
) -> None:
    key = jwks.new_key("k-held")
    jwks.publish(key)
    gateway = start_gateway(**oidc_settings(jwks, oidc_jwks_min_refresh_seconds=0.5))
    assert post(gateway, STATUS, bearer(mint(key))).status_code == 200
    fetched = jwks.fetches
    jwks.failing = 503
    try:
        time.sleep(0.6)
        stranger = jwks.new_key("k-unknown")
        # The unknown key id makes the gateway look again; the look fails.
        started = time.monotonic()
        assert_unauthenticated(post(gateway, STATUS, bearer(mint(stranger))))
        assert jwks.fetches == fetched + 1
        for _ in range(5):
            assert post(gateway, STATUS, bearer(mint(key))).status_code == 200
            assert_unauthenticated(post(gateway, STATUS, bearer(mint(stranger))))
        # At most one fetch per minimum interval, however many tokens name unknown keys.
        intervals = int((time.monotonic() - started) / 0.5)
        assert fetched + 1 <= jwks.fetches <= fetched + 1 + intervals
    finally:
        jwks.failing = None


def test_a_token_is_refused_while_no_keys_can_be_fetched(
    start_gateway: GatewayFactory, jwks: KeySetServer
) -> None:
    key = jwks.new_key("k-never")
    jwks.publish(key)
    jwks.failing = 500
    try:
        gateway = start_gateway(**oidc_settings(jwks, oidc_jwks_min_refresh_seconds=60))
        fetched = jwks.fetches
        for _ in range(3):
            response = post(gateway, STATUS, bearer(mint(key)))
            assert_unauthenticated(response)
            assert response.json()["errors"][0]["message"] == (
                "The token's signing keys cannot be fetched; retry later."
            )
        assert jwks.fetches == fetched + 1
    finally:
        jwks.failing = None


def test_api_keys_and_tokens_work_side_by_side(
    start_gateway: GatewayFactory, jwks: KeySetServer
) -> None:
    key = jwks.new_key("k-both")
    jwks.publish(key)
    gateway = start_gateway(**oidc_settings(jwks, api_keys=READER_KEY))
    assert post(gateway, STATUS, {"x-api-key": READER_KEY}).status_code == 200
    assert post(gateway, STATUS, bearer(mint(key))).status_code == 200
    challenge = post(gateway, STATUS).headers["www-authenticate"]
    assert "Bearer" in challenge and "X-API-Key" in challenge


# --- field authorization ----------------------------------------------------------------


def test_secret_references_need_the_scope_and_siblings_arrive_without_it(
    start_gateway: GatewayFactory, jwks: KeySetServer
) -> None:
    key = jwks.new_key("k-scope")
    jwks.publish(key)
    gateway = start_gateway(**oidc_settings(jwks))
    allowed = post(gateway, SECRETS, bearer(mint(key, scope="openid pcs-gateway:secrets")))
    body = allowed.json()
    assert "errors" not in body
    slurm = body["data"]["cluster"]["slurmConfiguration"]
    assert slurm["authKey"]["secretArn"].startswith("arn:aws:secretsmanager:")
    assert slurm["jwtAuth"]["jwtKey"]["secretArn"].startswith("arn:aws:secretsmanager:")

    for claims in ({"scope": "openid profile"}, {}, {"groups": ["hpc-users"]}):
        denied = post(gateway, SECRETS, bearer(mint(key, **claims))).json()
        cluster = denied["data"]["cluster"]
        assert cluster["name"] == "demo-full" and cluster["status"] == "ACTIVE"
        assert cluster["slurmConfiguration"]["authKey"] is None
        assert cluster["slurmConfiguration"]["jwtAuth"] is None
        assert cluster["slurmConfiguration"]["slurmRest"] == slurm["slurmRest"]
        assert (
            cluster["slurmConfiguration"]["scaleDownIdleTimeInSeconds"]
            == (slurm["scaleDownIdleTimeInSeconds"])
        )
        paths = sorted(error["path"] for error in denied["errors"])
        assert paths == [
            ["cluster", "slurmConfiguration", "authKey"],
            ["cluster", "slurmConfiguration", "jwtAuth"],
        ]
        assert {error["extensions"]["code"] for error in denied["errors"]} == {"FORBIDDEN"}

    # A group claim carrying the name works as well as a scope.
    grouped = post(gateway, SECRETS, bearer(mint(key, groups=["pcs-gateway:secrets"]))).json()
    assert grouped["data"]["cluster"]["slurmConfiguration"]["authKey"] is not None


def test_the_answer_cache_never_serves_one_callers_answer_to_another(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(api_keys=f"{READER_KEY},{ADMIN_KEY}:pcs-gateway:secrets")
    cache = gateway.app.stats
    for _ in range(3):
        admin = post(gateway, SECRETS, {"x-api-key": ADMIN_KEY}).json()
        reader = post(gateway, SECRETS, {"x-api-key": READER_KEY}).json()
        assert admin["data"]["cluster"]["slurmConfiguration"]["authKey"] is not None
        assert reader["data"]["cluster"]["slurmConfiguration"]["authKey"] is None
        assert reader["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    # The admin's answer was reused for the admin only.
    assert cache.hits == 2
    # Without credentials, not even a cached answer comes back.
    assert_unauthenticated(post(gateway, SECRETS))
    assert emulator.calls() == 1


def test_secret_references_are_visible_in_development_without_authentication(
    gateway: Gateway,
) -> None:
    answer = gateway.query(SECRETS)
    assert "errors" not in answer
    assert answer["data"]["cluster"]["slurmConfiguration"]["authKey"]["secretArn"]


def test_a_production_gateway_open_to_anyone_hides_secret_references(
    start_gateway: GatewayFactory,
) -> None:
    gateway = start_gateway(environment="production", allow_unauthenticated=True)
    answer = gateway.query(SECRETS)
    assert answer["data"]["cluster"]["slurmConfiguration"]["authKey"] is None
    assert answer["errors"][0]["extensions"]["code"] == "FORBIDDEN"


# --- settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"environment": "production"},
            "PCS_GATEWAY_ENVIRONMENT: production needs authentication",
        ),
        ({"api_keys": "short"}, "PCS_GATEWAY_API_KEYS: Value error, entry 1:"),
        ({"oidc_issuer": ISSUER}, "PCS_GATEWAY_OIDC_ISSUER, PCS_GATEWAY_OIDC_AUDIENCE and"),
        ({"cors_allow_origins": "*"}, "PCS_GATEWAY_CORS_ALLOW_ORIGINS:"),
        ({"rate_limit": "lots"}, "PCS_GATEWAY_RATE_LIMIT:"),
    ],
)
def test_bad_security_settings_stop_start_up_with_one_line(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(**settings)
    text = str(raised.value)
    assert text.startswith(message)
    assert "\n" not in text
    assert "short" not in text  # a key's value is never repeated


def test_a_key_file_that_cannot_be_read_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(api_keys_file=tmp_path / "missing")
    assert str(raised.value) == (
        "PCS_GATEWAY_API_KEYS_FILE: Value error, cannot read the file (FileNotFoundError)"
    )
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n")
    with pytest.raises(SettingsError, match="holds no key"):
        load_settings(api_keys_file=empty)

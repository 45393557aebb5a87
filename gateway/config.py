"""The gateway's settings: one class, read from `PCS_GATEWAY_*` variables, validated at start."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gateway.api_keys import parse_api_keys, read_api_keys_file

ENV_PREFIX = "PCS_GATEWAY_"
#: Most regions one gateway serves: each holds a client, a breaker and a metrics label set.
MAX_REGIONS = 32
#: An AWS region name: us-east-1, eu-central-2, us-gov-west-1, cn-northwest-1...
REGION_NAME = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")


class Environment(StrEnum):
    """Deployment mode: development keeps the tools on, production locks them down."""

    DEVELOPMENT = "development"
    PRODUCTION = "production"


Seconds = Annotated[float, Field(gt=0, le=3600)]


class Settings(BaseSettings):
    """Every setting of the gateway's own; AWS settings are read by the SDK itself."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    environment: Environment = Field(
        Environment.DEVELOPMENT, description="development or production."
    )
    host: str = Field("127.0.0.1", description="Address `serve` listens on.")
    port: int = Field(8000, ge=0, le=65535, description="Port `serve` listens on.")
    drain_seconds: Seconds = Field(
        15.0,
        description="On SIGTERM, how long requests in flight get to finish before the gateway "
        "closes its connections and exits.",
    )
    # Slow and oversized clients: what one connection may hold before it is answered or closed.
    max_header_bytes: int = Field(
        32_768,
        ge=1024,
        le=1_048_576,
        description="Largest request line and headers; larger ones get 431 and the connection "
        "closes.",
    )
    header_timeout_seconds: Seconds = Field(
        10.0,
        description="Time from a request's first byte to the end of its headers; past it the "
        "request gets 408 and the connection closes.",
    )
    body_timeout_seconds: Seconds = Field(
        30.0,
        description="Time from the end of a request's headers to the end of its body; past it "
        "the request gets 408 (or, once answering, the connection closes).",
    )
    keep_alive_seconds: Seconds = Field(
        5.0,
        description="How long a connection may stay open with no request, before its first one "
        "and between two; keep it above the idle timeout of a proxy that reuses connections.",
    )
    demo: bool = Field(
        False, description="Start the built-in PCS emulator and answer from it (no AWS account)."
    )
    graphiql: bool | None = Field(
        None,
        description="Serve GraphiQL to browsers; default on in development, off in production.",
    )
    # GraphiQL: where its scripts come from, what its header editor starts with.
    graphiql_assets_dir: Path | None = Field(
        None,
        description="Folder made by `pcs-gateway graphiql-assets download`: GraphiQL's scripts "
        "and styles are served from it. Unset: the page loads them from the public CDN.",
    )
    graphiql_default_headers: dict[str, str] = Field(
        default_factory=dict,
        description="Headers the GraphiQL header editor starts with, as JSON, "
        'e.g. {"X-API-Key": ""}.',
    )

    regions: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="AWS regions served, comma-separated (e.g. us-east-1,eu-west-1); the first "
        "is the default, asked when a field names no region. Empty: the region of AWS_REGION "
        f"(or AWS_DEFAULT_REGION); with demo on, the demo's regions. At most {MAX_REGIONS}.",
    )

    cache_url: str = Field(
        "memory://",
        description="memory:// (in-process), redis://[:password@]host:port/db, or rediss:// (TLS).",
    )
    cache_namespace: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="Names the AWS account in every cluster cache key, so deployments of "
        "different accounts or roles sharing one Redis never serve each other's clusters. "
        "Default: the account id of AWS_ROLE_ARN when set, else a digest of the access key id.",
    )
    cache_max_entries: int = Field(
        5000,
        ge=16,
        le=10_000_000,
        description="Entries the memory cache holds before LRU eviction.",
    )
    cache_ttl_settled_seconds: Seconds = Field(
        30.0, description="Freshness of clusters in a settled status (ACTIVE, SUSPENDED, *_FAILED)."
    )
    cache_ttl_transitional_seconds: Seconds = Field(
        5.0, description="Freshness of clusters in transition (CREATING, UPDATING, DELETING, ...)."
    )
    cache_refresh_ahead_seconds: Annotated[float, Field(ge=0, le=3600)] = Field(
        1.0,
        description="A cluster asked for in the last this many seconds of its freshness (at "
        "most the last tenth of it) is fetched again in the background, while its value is "
        "still served: callers never wait for a hot cluster's refresh; 0 turns it off.",
    )
    list_cache_ttl_seconds: Seconds = Field(
        5.0,
        description="Freshness of a page of a list (clusters, a cluster's queues or compute "
        "node groups), by region, list, parent, cursor and page size; keep it no longer than "
        "the transitional freshness, so a resource created or deleted shows soon.",
    )
    cursor_key: SecretStr | None = Field(
        None,
        description="Key (at least 32 characters) that signs page cursors, so a cursor that "
        "was altered or belongs to another list is refused. Unset: a random key per process, "
        "and a cursor is good only on the replica that made it; set the same key on every "
        "replica behind one Service.",
    )
    max_fanout: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Most resources one operation may reach: each list's page size times the "
        "page sizes of the lists around it, summed over its lists, plus its lookups; a larger "
        "operation is refused before any PCS call.",
    )
    fetch_concurrency: int = Field(
        16,
        ge=1,
        le=1000,
        description="Most Get and tag calls one request makes at once for the nodes of its "
        "pages; the rest wait their turn.",
    )
    cache_negative_ttl_seconds: Seconds = Field(
        10.0, description="How long a not-found answer is remembered."
    )
    cache_max_stale_seconds: Annotated[float, Field(ge=0, le=7 * 86400)] = Field(
        3600.0, description="Oldest value served, marked stale, when PCS fails; 0 turns it off."
    )
    cache_max_connections: int = Field(
        50, ge=1, le=10_000, description="Connections to Redis one gateway process opens at most."
    )
    cache_timeout_seconds: Seconds = Field(
        0.25, description="Longest wait for one cache operation before going to PCS without it."
    )

    pcs_max_pool_connections: int = Field(
        50, ge=1, le=1000, description="Connections the PCS client keeps open at most."
    )
    pcs_connect_timeout_seconds: Seconds = Field(2.0, description="Connect timeout for PCS calls.")
    # Attempts, read timeouts and backoff together fit the request deadline (see
    # `pcs_retry_budget_seconds`), so a retry can still answer the request that waits.
    pcs_read_timeout_seconds: Seconds = Field(
        2.0, description="Read timeout of one attempt of a PCS call."
    )
    pcs_retry_mode: Literal["standard", "adaptive", "legacy"] = Field(
        "standard", description="botocore retry mode for throttling and 5xx answers."
    )
    pcs_max_attempts: int = Field(
        2,
        ge=1,
        le=10,
        description="Attempts per PCS call, the first included; with the read timeout and "
        "the backoff between them they must fit the request deadline (checked at start).",
    )

    # Upstream protection: deadline, rate limit, circuit breaker.
    request_deadline_seconds: Seconds = Field(
        5.0,
        description="Total time one GraphQL request waits for PCS, retries included; "
        "past it the fields still waiting fail with UPSTREAM_UNAVAILABLE.",
    )
    pcs_rate_limit_per_second: Annotated[float, Field(gt=0, le=10_000)] = Field(
        20.0, description="Most GetCluster calls a second this process sends to PCS."
    )
    pcs_rate_limit_burst: Annotated[float, Field(ge=1, le=10_000)] | None = Field(
        None, description="Calls that may go at once before the rate applies; default the rate."
    )
    pcs_rate_limit_max_wait_seconds: Annotated[float, Field(ge=0, le=60)] = Field(
        2.0, description="Longest wait for the rate limit before failing with THROTTLED."
    )
    breaker_failure_threshold: int = Field(
        5, ge=1, le=1000, description="Upstream failures in a row that open the circuit breaker."
    )
    breaker_open_seconds: Seconds = Field(
        10.0, description="How long the open breaker keeps calls from PCS before one probe."
    )

    # Live status and replicas: subscriptions, the pollers behind them, Redis coordination.
    coordination_url: str | None = Field(
        None,
        description="Redis that replicas coordinate through (poll leases, change events, the "
        "shared PCS rate budget); default the cache's Redis, if any; `off` turns it off.",
    )
    replicas: int = Field(
        1,
        ge=1,
        le=1000,
        description="Replicas sharing the PCS rate limit: while the shared budget is "
        "unreachable each one keeps to the limit divided by this.",
    )
    live_poll_settled_seconds: Seconds | None = Field(
        None,
        description="How often a subscribed cluster in a settled status is polled; default "
        "the settled cache TTL.",
    )
    live_poll_transitional_seconds: Seconds | None = Field(
        None,
        description="How often a subscribed cluster in transition is polled; default the "
        "transitional cache TTL.",
    )
    live_lease_seconds: Annotated[float, Field(ge=0.5, le=300)] = Field(
        6.0,
        description="Lease a replica holds to lead a cluster's poll; another takes over "
        "within this time when it dies.",
    )
    live_cold_miss_wait_seconds: Annotated[float, Field(ge=0, le=30)] = Field(
        1.0,
        description="With Redis, how long a cache miss waits for the replica already asking "
        "PCS for that cluster before asking itself; 0 turns the wait off.",
    )
    live_max_subscriptions_per_connection: int = Field(
        100, ge=1, le=10_000, description="Most subscriptions one connection may hold at once."
    )
    live_max_subscriptions_per_caller: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="Most subscriptions one caller may hold at once, all connections together.",
    )
    live_keepalive_seconds: Seconds = Field(
        15.0,
        description="Keep-alive interval of subscription streams (WebSocket pings, SSE comments).",
    )
    live_send_queue: int = Field(
        64,
        ge=1,
        le=100_000,
        description="Events waiting to be sent on one subscription at most; a consumer that "
        "falls further behind is disconnected.",
    )

    # Answer cache: repeated operations answered with their encoded bytes.
    answer_cache_max_entries: int = Field(
        10_000,
        ge=0,
        le=1_000_000,
        description="Answers of repeated queries kept in memory; 0 turns the answer cache off.",
    )
    answer_cache_max_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024 * 1024,
        le=16 * 1024 * 1024 * 1024,
        description="Bytes the answer cache holds at most (bodies and headers).",
    )

    compiled_plans_max_entries: int = Field(
        256,
        ge=0,
        le=1_000_000,
        description="Query documents kept compiled (per document and operation name) and "
        "executed without Strawberry's executor; a 100-field document's plan takes about "
        "100 KB, and its document, kept parsed without locations for the compiled lane, "
        "about 24 KB more. 0 turns compiled execution off.",
    )
    compiled_lane: bool = Field(
        True,
        description="Answer queries whose document is compiled in the fast lane, in front of "
        "Starlette (the response written directly); false runs them behind Starlette and "
        "Strawberry's view, still by their plans.",
    )
    persisted_queries_max_entries: int = Field(
        10_000,
        ge=0,
        le=1_000_000,
        description="Documents of automatic persisted queries kept in memory (and in Redis "
        "when the cache is Redis); 0 turns persisted queries off.",
    )
    persisted_queries_max_bytes: int = Field(
        8 * 1024 * 1024,
        ge=64 * 1024,
        le=1024 * 1024 * 1024,
        description="Bytes the documents of persisted queries take in memory at most; the "
        "least recently used go first.",
    )
    persisted_query_max_document_bytes: int = Field(
        16 * 1024,
        ge=256,
        le=10_000_000,
        description="Largest document registered as a persisted query; a larger one still "
        "runs when sent, but is not kept.",
    )
    persisted_queries_shared_max_bytes: int = Field(
        4 * 1024 * 1024,
        ge=0,
        le=1024 * 1024 * 1024,
        description="Bytes of documents written to a shared Redis per day, so persisted "
        "queries never push clusters, quotas or stale copies out of it; 0 keeps them "
        "in memory only.",
    )

    # Observability: logs, metrics, worker processes.
    log_format: Literal["auto", "json", "console"] = Field(
        "auto",
        description="Log lines as JSON objects or readable text; auto: JSON in production, "
        "text in development.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level logged (one line per request at info)."
    )
    log_flush_seconds: Annotated[float, Field(ge=0, le=5)] = Field(
        0.05,
        description="Request lines are held and written together at most this long after "
        "the first of them (or once 64 KB are held; a warning or error writes them first, "
        "and so does shutdown); 0 writes them at the end of each event-loop round.",
    )
    metrics_max_operation_names: int = Field(
        100,
        ge=1,
        le=10_000,
        description="Distinct operation names the metrics label by; later ones count as other.",
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Worker processes `serve` runs; above 1 needs PROMETHEUS_MULTIPROC_DIR.",
    )

    websockets: bool = Field(
        False,
        description="Serve GraphQL over WebSocket (graphql-transport-ws) on /graphql; each "
        "operation on a connection is authorized, rate-limited and given a deadline as an "
        "HTTP request is. Off: the handshake is refused with 403.",
    )

    max_body_bytes: int = Field(
        65_536, ge=1024, le=10_000_000, description="Largest request body; larger ones get 413."
    )
    max_batch_size: int = Field(
        100, ge=1, le=10_000, description="Most identifiers one clusters(identifiers:) may ask for."
    )

    # Security: who may call, what they may see, how much one operation may cost.
    api_keys: SecretStr | None = Field(
        None,
        description="API keys callers send in X-API-Key, comma-separated; an entry may end with "
        "`:scope scope...` and may be given as `sha256:<hex digest>` instead of the key.",
    )
    api_keys_file: Path | None = Field(
        None,
        description="File of API keys, one a line in the same form (e.g. a mounted Kubernetes "
        "secret); read at start.",
    )
    oidc_issuer: str | None = Field(
        None, description="Issuer (`iss`) of accepted OIDC bearer tokens; turns OIDC on."
    )
    oidc_audience: str | None = Field(
        None, description="Audience (`aud`) an accepted bearer token must name."
    )
    oidc_jwks_url: str | None = Field(
        None, description="URL of the issuer's JSON Web Key Set that signs the tokens."
    )
    oidc_jwks_max_age_seconds: Annotated[float, Field(ge=1, le=86400)] = Field(
        3600.0, description="How long fetched signing keys are used before fetching them again."
    )
    oidc_jwks_min_refresh_seconds: Annotated[float, Field(ge=0, le=3600)] = Field(
        30.0,
        description="Shortest time between two fetches of the key set when a token names an "
        "unknown key id.",
    )
    oidc_leeway_seconds: Annotated[int, Field(ge=0, le=600)] = Field(
        30, description="Clock skew allowed when checking a token's exp and nbf."
    )
    secrets_scope: str = Field(
        "pcs-gateway:secrets",
        min_length=1,
        description="Scope or group a caller needs to see secret references "
        "(slurmConfiguration.authKey and jwtAuth).",
    )
    allow_unauthenticated: bool = Field(
        False,
        description="Let a production gateway start with no authentication configured.",
    )
    trusted_documents_file: Path | None = Field(
        None,
        description="A manifest of trusted documents (GraphQL Codegen's persisted documents "
        "or Apollo's persisted query manifest), loaded and validated at start; clients "
        "name its documents by id.",
    )
    trusted_documents_only: bool = Field(
        False,
        description="Run only the manifest's documents; any other is refused with "
        "`PERSISTED_QUERY_NOT_IN_LIST`. Needs the manifest.",
    )
    introspection: bool | None = Field(
        None,
        description="Answer introspection queries; default on in development, in production "
        "only when GraphiQL is on.",
    )
    cors_allow_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins browsers may call the API from, comma-separated "
        "(e.g. https://portal.example.com); empty: no cross-origin calls.",
    )
    max_depth: int = Field(12, ge=2, le=100, description="Deepest selection an operation may have.")
    max_aliases: int = Field(30, ge=0, le=10_000, description="Most aliases one operation may use.")
    max_fragment_depth: int = Field(
        20,
        ge=1,
        le=100,
        description="Longest chain of fragments spreading fragments one operation may hold.",
    )
    max_fragment_spreads: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Most fragment spreads one operation may hold once fragments are expanded "
        "(a fragment spread twice counts twice, with the spreads inside it).",
    )
    max_tokens: int = Field(
        4000, ge=100, le=1_000_000, description="Most tokens one GraphQL document may hold."
    )
    max_lookups: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description="Most distinct cluster identifiers one operation may ask for, all fields "
        "together; default the batch size.",
    )
    rate_limit: str | None = Field(
        "600/minute",
        description="Requests one caller may make that reach GraphQL execution, e.g. "
        "`600/minute` or `20/second;600/minute`; empty turns it off.",
    )
    trusted_proxies: int = Field(
        0,
        ge=0,
        le=10,
        description="Proxies in front of the gateway that append to X-Forwarded-For; the "
        "client address is the one they saw.",
    )

    @field_validator("api_keys")
    @classmethod
    def _keys_parse(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_api_keys(value.get_secret_value())
        return value

    @field_validator("api_keys_file")
    @classmethod
    def _keys_file_reads(cls, value: Path | None) -> Path | None:
        if value is not None:
            read_api_keys_file(value)
        return value

    @field_validator("cors_allow_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_allow_origins")
    @classmethod
    def _exact_origins(cls, value: list[str]) -> list[str]:
        from strawberry.http.websocket_origin import normalize_origin

        origins = []
        for origin in value:
            normal = normalize_origin(origin)
            if normal is None or not origin.startswith(("https://", "http://")):
                raise ValueError("list exact origins such as https://portal.example.com, no *")
            origins.append(normal)
        return origins

    @field_validator("regions", mode="before")
    @classmethod
    def _split_regions(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("regions")
    @classmethod
    def _region_names(cls, value: list[str]) -> list[str]:
        if len(value) > MAX_REGIONS:
            raise ValueError(f"at most {MAX_REGIONS} regions")
        if not all(REGION_NAME.fullmatch(name) for name in value):
            raise ValueError("each region is a region name such as eu-west-1")
        if len(set(value)) != len(value):
            raise ValueError("a region is listed twice")
        return value

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str | None) -> str | None:
        if value is None or not value.strip() or value.strip().lower() == "off":
            return None
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError("expected e.g. 600/minute or 20/second;600/minute") from None
        return value.strip()

    @model_validator(mode="after")
    def _authentication_complete(self) -> Settings:
        oidc = (self.oidc_issuer, self.oidc_audience, self.oidc_jwks_url)
        if any(oidc) and not all(oidc):
            raise ValueError(
                f"{ENV_PREFIX}OIDC_ISSUER, {ENV_PREFIX}OIDC_AUDIENCE and "
                f"{ENV_PREFIX}OIDC_JWKS_URL go together: set all three"
            )
        if self.trusted_documents_only and self.trusted_documents_file is None:
            raise ValueError(
                f"{ENV_PREFIX}TRUSTED_DOCUMENTS_ONLY needs {ENV_PREFIX}TRUSTED_DOCUMENTS_FILE"
            )
        if (
            self.environment is Environment.PRODUCTION
            and not self.authentication_configured
            and not self.allow_unauthenticated
        ):
            raise ValueError(
                f"{ENV_PREFIX}ENVIRONMENT: production needs authentication: set "
                f"{ENV_PREFIX}API_KEYS, {ENV_PREFIX}API_KEYS_FILE or {ENV_PREFIX}OIDC_ISSUER "
                f"(or {ENV_PREFIX}ALLOW_UNAUTHENTICATED=true to serve anyone)"
            )
        return self

    @model_validator(mode="after")
    def _retries_fit_the_deadline(self) -> Settings:
        if (
            self.environment is Environment.PRODUCTION
            and self.pcs_retry_budget_seconds > self.request_deadline_seconds
        ):
            raise ValueError(
                f"{ENV_PREFIX}PCS_READ_TIMEOUT_SECONDS x {ENV_PREFIX}PCS_MAX_ATTEMPTS plus "
                f"backoff ({self.pcs_retry_budget_seconds:g} s) must fit "
                f"{ENV_PREFIX}REQUEST_DEADLINE_SECONDS ({self.request_deadline_seconds:g} s)"
            )
        return self

    @property
    def pcs_retry_budget_seconds(self) -> float:
        """The longest one PCS call can take: every attempt's read timeout, and botocore's
        longest backoff between them (up to 2^(n-1) s before retry n, at most 20 s)."""
        backoff = sum(min(2.0 ** (n - 1), 20.0) for n in range(1, self.pcs_max_attempts))
        return self.pcs_read_timeout_seconds * self.pcs_max_attempts + backoff

    @property
    def authentication_configured(self) -> bool:
        """Callers must authenticate: API keys or OIDC are configured."""
        keys = self.api_keys is not None and self.api_keys.get_secret_value().strip()
        return bool(keys) or self.api_keys_file is not None or self.oidc_issuer is not None

    @property
    def lookup_limit(self) -> int:
        """Distinct identifiers one operation may ask for: a full batch at least by default."""
        return self.max_lookups if self.max_lookups is not None else self.max_batch_size

    @property
    def introspection_enabled(self) -> bool:
        """Introspection is on when asked for, else in development or with GraphiQL."""
        if self.introspection is not None:
            return self.introspection
        return self.environment is Environment.DEVELOPMENT or self.graphiql_enabled

    @field_validator("cursor_key")
    @classmethod
    def _long_cursor_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters long")
        return value

    @field_validator("cache_url")
    @classmethod
    def _known_cache_scheme(cls, value: str) -> str:
        if not value.startswith(("memory://", "redis://", "rediss://")):
            raise ValueError("must start with memory://, redis:// or rediss://")
        return value

    @field_validator("coordination_url")
    @classmethod
    def _known_coordination_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.strip().lower() in ("", "off"):
            return ""
        if not value.startswith(("redis://", "rediss://")):
            raise ValueError("must start with redis:// or rediss://, or be off")
        return value

    def live_poll_seconds(self, *, settled: bool) -> float:
        """How often a subscribed cluster is polled, by its status class."""
        if settled:
            return self.live_poll_settled_seconds or self.cache_ttl_settled_seconds
        return self.live_poll_transitional_seconds or self.cache_ttl_transitional_seconds

    @property
    def graphiql_enabled(self) -> bool:
        """GraphiQL is on when asked for, else in development only."""
        if self.graphiql is not None:
            return self.graphiql
        return self.environment is Environment.DEVELOPMENT


class SettingsError(Exception):
    """A setting with a bad value; its message is one line naming the variable."""


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment, raising SettingsError with a one-line message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        # The bad value itself is left out: it may be a credential.
        if not first["loc"]:  # a check across settings: its message names them
            raise SettingsError(first["msg"].removeprefix("Value error, ")) from None
        field = str(first["loc"][0])
        raise SettingsError(f"{ENV_PREFIX}{field.upper()}: {first['msg']}") from None

"""The gateway's settings: one class, read from `PCS_GATEWAY_*` variables, validated at start."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "PCS_GATEWAY_"


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

    cache_url: str = Field(
        "memory://",
        description="memory:// (in-process), redis://[:password@]host:port/db, or rediss:// (TLS).",
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
    # Well under the request deadline, so a retry can still answer the request that waits.
    pcs_read_timeout_seconds: Seconds = Field(2.0, description="Read timeout for PCS calls.")
    pcs_retry_mode: Literal["standard", "adaptive", "legacy"] = Field(
        "standard", description="botocore retry mode for throttling and 5xx answers."
    )
    pcs_max_attempts: int = Field(
        3, ge=1, le=10, description="Attempts per PCS call, the first included."
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

    # Observability: logs, metrics, worker processes.
    log_format: Literal["auto", "json", "console"] = Field(
        "auto",
        description="Log lines as JSON objects or readable text; auto: JSON in production, "
        "text in development.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level logged (one line per request at info)."
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

    max_body_bytes: int = Field(
        65_536, ge=1024, le=10_000_000, description="Largest request body; larger ones get 413."
    )
    max_batch_size: int = Field(
        100, ge=1, le=10_000, description="Most identifiers one clusters(identifiers:) may ask for."
    )

    @field_validator("cache_url")
    @classmethod
    def _known_cache_scheme(cls, value: str) -> str:
        if not value.startswith(("memory://", "redis://", "rediss://")):
            raise ValueError("must start with memory://, redis:// or rediss://")
        return value

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
        field = str(first["loc"][0]) if first["loc"] else "?"
        # The bad value itself is left out: it may be a credential.
        raise SettingsError(f"{ENV_PREFIX}{field.upper()}: {first['msg']}") from None

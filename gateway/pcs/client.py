"""The PCS client: one long-lived aioboto3 client, typed answers and typed errors."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aioboto3
import aiohttp
from aiobotocore.session import AioSession
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    NoCredentialsError,
    PartialCredentialsError,
)

from gateway.config import Settings
from gateway.pcs import errors
from gateway.pcs.breaker import CircuitBreaker
from gateway.pcs.cluster import Cluster, parse_cluster
from gateway.pcs.model import DATA_PATH, SERVICE_NAME
from gateway.pcs.observer import (
    SUCCESS,
    CallResult,
    CallTarget,
    NoObserver,
    UpstreamObserver,
    outcome_of,
)
from gateway.pcs.rate_budget import RateBudget, SharedBudget, SharedTokens, TokenBucket

log = logging.getLogger(__name__)

GET_CLUSTER = "GetCluster"


@dataclass(frozen=True, slots=True)
class FetchedCluster:
    """A GetCluster answer: the cluster, its JSON form for caches, and the AWS request id."""

    cluster: Cluster
    wire: dict[str, Any]
    request_id: str | None


def make_session() -> aioboto3.Session:
    """An aioboto3 session whose botocore reads the shipped (newest) PCS model."""
    botocore_session = AioSession()
    botocore_session.set_config_variable("data_path", str(DATA_PATH))
    return aioboto3.Session(botocore_session=botocore_session)


class PcsClient:
    """Calls PCS through one aioboto3 client and turns every failure into a PcsError."""

    def __init__(
        self,
        client: Any,
        *,
        endpoint: str,
        limiter: RateBudget | None = None,
        breaker: CircuitBreaker | None = None,
        observer: UpstreamObserver | None = None,
    ) -> None:
        self._client = client
        #: Where calls go: the endpoint URL and region; part of every cache key.
        self.endpoint = endpoint
        self.limiter = limiter
        self.breaker = breaker
        self._observer = observer or NoObserver()
        self._target = CallTarget(
            region=str(getattr(client.meta, "region_name", "") or ""),
            address=str(getattr(client.meta, "endpoint_url", "") or ""),
        )
        if limiter is not None:
            # Every HTTP attempt takes a token, the SDK's retries included: the rate is
            # what PCS receives, not how many calls the gateway started.
            client.meta.events.register(f"before-send.{SERVICE_NAME}", self._take_token)

    async def _take_token(self, **_: Any) -> None:
        # Returning None lets botocore send the request; Throttled ends the call unsent.
        if self.limiter is not None:
            await self.limiter.acquire()

    @property
    def region(self) -> str:
        """The region this client calls."""
        return self._target.region

    @property
    def events(self) -> Any:
        """botocore's event system of the client, for instrumentation."""
        return self._client.meta.events

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        settings: Settings,
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        credentials: Mapping[str, str] | None = None,
        observer: UpstreamObserver | None = None,
        shared_tokens: Callable[[str], SharedTokens] | None = None,
    ) -> AsyncIterator[PcsClient]:
        """Make the client once for the process; close it when the block ends.

        With `shared_tokens` (made for the endpoint and region) the rate budget is the
        deployment's, else this process's own.
        """
        session = make_session()
        config = Config(
            max_pool_connections=settings.pcs_max_pool_connections,
            connect_timeout=settings.pcs_connect_timeout_seconds,
            read_timeout=settings.pcs_read_timeout_seconds,
            retries={
                "mode": settings.pcs_retry_mode,
                "total_max_attempts": settings.pcs_max_attempts,
            },
            user_agent_extra="pcs-gateway",
        )
        async with session.client(
            SERVICE_NAME,
            endpoint_url=endpoint_url,
            # botocore reads AWS_DEFAULT_REGION only; the other SDKs honour AWS_REGION too.
            region_name=region_name or os.environ.get("AWS_REGION") or None,
            config=config,
            **dict(credentials or {}),
        ) as client:
            where = f"{client.meta.endpoint_url}|{client.meta.region_name}"
            limiter: RateBudget
            if shared_tokens is None:
                limiter = TokenBucket(
                    settings.pcs_rate_limit_per_second,
                    burst=settings.pcs_rate_limit_burst,
                    max_wait=settings.pcs_rate_limit_max_wait_seconds,
                )
            else:
                # The replica's share, while the shared bucket is unreachable.
                share = settings.pcs_rate_limit_per_second / settings.replicas
                burst = settings.pcs_rate_limit_burst
                limiter = SharedBudget(
                    shared_tokens(where),
                    TokenBucket(
                        share,
                        burst=None if burst is None else max(1.0, burst / settings.replicas),
                        max_wait=settings.pcs_rate_limit_max_wait_seconds,
                    ),
                )
            breaker = CircuitBreaker(
                threshold=settings.breaker_failure_threshold,
                open_seconds=settings.breaker_open_seconds,
            )
            yield cls(
                client,
                endpoint=where,
                limiter=limiter,
                breaker=breaker,
                observer=observer,
            )

    async def get_cluster(self, identifier: str) -> FetchedCluster:
        """GetCluster by name or id, within the rate limit and the breaker; raises PcsError.

        Each call is reported to the observer: its outcome, duration (rate-limit wait and
        the SDK's retries included), AWS request id and HTTP status.
        """
        started = time.perf_counter()
        with self._observer.call(GET_CLUSTER, self._target, identifier) as report:
            try:
                fetched = await self._guarded_get_cluster(identifier)
            except errors.PcsError as exc:
                report.finished(
                    CallResult(
                        outcome_of(exc),
                        time.perf_counter() - started,
                        exc.request_id,
                        exc.http_status,
                        error=type(exc).__name__,
                    )
                )
                raise
            report.finished(
                CallResult(SUCCESS, time.perf_counter() - started, fetched.request_id, 200)
            )
            return fetched

    async def _guarded_get_cluster(self, identifier: str) -> FetchedCluster:
        breaker = self.breaker
        try:
            if breaker is not None:
                breaker.before_call()
            fetched = await self._get_cluster(identifier)
        except errors.PcsError as exc:
            _log_failure(identifier, exc)
            if breaker is not None and not isinstance(exc, errors.CircuitOpen):
                if exc.upstream_failure:
                    breaker.failed()
                elif exc.http_status is not None:
                    # PCS answered (not found, denied...): PCS itself is healthy.
                    breaker.succeeded()
                else:
                    # The call never reached PCS (held back, no credentials).
                    breaker.abandoned()
            raise
        except BaseException:
            if breaker is not None:
                breaker.abandoned()
            raise
        if breaker is not None:
            breaker.succeeded()
        return fetched

    async def _get_cluster(self, identifier: str) -> FetchedCluster:
        try:
            answer = await self._client.get_cluster(clusterIdentifier=identifier)
        except ClientError as exc:
            raise _from_client_error(exc) from exc
        except (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError) as exc:
            raise errors.GatewayCredentialsError(
                "The gateway has no usable AWS credentials.", detail=_describe(exc)
            ) from exc
        except (TimeoutError, BotoCoreError, aiohttp.ClientError, OSError) as exc:
            raise errors.UpstreamUnavailable(
                "PCS could not be reached.", detail=_describe(exc)
            ) from exc
        metadata = answer.get("ResponseMetadata", {})
        request_id = metadata.get("RequestId")
        raw = answer.get("cluster")
        if not isinstance(raw, Mapping):
            # botocore reads an unparsable or cut-off body as an empty answer.
            raise errors.UpstreamUnavailable(
                _UNREADABLE,
                request_id=request_id,
                http_status=metadata.get("HTTPStatusCode"),
                detail="the answer has no readable cluster member",
            )
        try:
            cluster = parse_cluster(raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.UpstreamUnavailable(
                _UNREADABLE,
                request_id=request_id,
                http_status=metadata.get("HTTPStatusCode"),
                detail=f"the cluster does not fit the model: {_describe(exc)}",
            ) from exc
        return FetchedCluster(cluster=cluster, wire=_json_ready(raw), request_id=request_id)


def _from_client_error(exc: ClientError) -> errors.PcsError:
    response: Mapping[str, Any] = exc.response
    error: Mapping[str, Any] = response.get("Error", {})
    metadata: Mapping[str, Any] = response.get("ResponseMetadata", {})
    code = str(error.get("Code") or "")
    members: dict[str, Any] = {
        "aws_error_code": code or None,
        "request_id": metadata.get("RequestId"),
        "http_status": metadata.get("HTTPStatusCode"),
        "resource_id": response.get("resourceId"),
        "resource_type": response.get("resourceType"),
        "retry_after_seconds": _int_or_none(response.get("retryAfterSeconds")),
        "reason": response.get("reason"),
        "field_list": [
            {"name": str(f.get("name", "")), "message": str(f.get("message", ""))}
            for f in response.get("fieldList") or ()
        ],
    }
    members["detail"] = _describe(exc)
    known = errors.BY_SHAPE.get(code)
    if known is not None:
        return known(_MESSAGES[code], **members)
    if code in errors.CREDENTIAL_ERROR_CODES:
        return errors.GatewayCredentialsError(
            "PCS did not accept the gateway's AWS credentials.", **members
        )
    status = members["http_status"]
    if isinstance(status, int) and status >= 500:
        return errors.UpstreamUnavailable("PCS failed to answer.", **members)
    return errors.UnknownPcsError(
        "PCS answered with an error the gateway does not know.", **members
    )


_UNREADABLE = "PCS sent an answer the gateway could not read."


def _describe(exc: BaseException) -> str:
    """An exception and its causes in one line, for the server log."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < 4:
        text = str(current)
        parts.append(f"{type(current).__name__}: {text}" if text else type(current).__name__)
        current = current.__cause__ or current.__context__
    return " <- ".join(parts)


def _log_failure(identifier: str, exc: errors.PcsError) -> None:
    """Each failed call once, with its cause; how loud depends on who must act."""
    if isinstance(exc, errors.GatewayCredentialsError):
        level = logging.ERROR  # an operator must fix the gateway's credentials
    elif exc.upstream_failure or isinstance(exc, errors.AccessDenied | errors.UnknownPcsError):
        level = logging.WARNING
    elif exc.aws_error_code is not None and isinstance(exc, errors.Throttled):
        level = logging.INFO
    else:
        # Answers about the caller's input, and calls the gateway held back (counted in
        # the metrics): not the operator's concern one by one.
        level = logging.DEBUG
    if log.isEnabledFor(level):
        log.log(
            level,
            "GetCluster %s failed: %s%s (request id %s): %s",
            identifier,
            type(exc).__name__,
            f" {exc.aws_error_code}" if exc.aws_error_code else "",
            exc.request_id or "none",
            exc.detail or _describe(exc),
        )


# Messages are the gateway's own: PCS's text can echo input and is not meant for end users.
_MESSAGES = {
    "ResourceNotFoundException": "No cluster with this identifier exists.",
    "ValidationException": "PCS rejected the request's input.",
    "ThrottlingException": "PCS is throttling requests; retry later.",
    "ConflictException": "The request conflicts with the cluster's current state.",
    "AccessDeniedException": "The gateway is not allowed to read this cluster.",
    "InternalServerException": "PCS failed to answer.",
}


def _int_or_none(value: object) -> int | None:
    try:
        return None if value is None else int(str(value))
    except ValueError:
        return None


def _json_ready(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(item) for item in value]
    return value

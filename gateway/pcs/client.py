"""The PCS client: one long-lived aioboto3 client, typed answers and typed errors."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, TypeVar

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
from gateway.pcs.compute_node_group import parse_compute_node_group
from gateway.pcs.model import DATA_PATH, SERVICE_NAME
from gateway.pcs.observer import (
    SUCCESS,
    CallResult,
    CallTarget,
    NoObserver,
    UpstreamObserver,
    outcome_of,
)
from gateway.pcs.queue import parse_queue
from gateway.pcs.rate_budget import RateBudget, SharedBudget, SharedTokens, TokenBucket

log = logging.getLogger(__name__)

GET_CLUSTER = "GetCluster"
#: An IAM role's ARN; its fifth field is the account id.
ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::(\d{12}):role/.+")
LIST_CLUSTERS = "ListClusters"
LIST_QUEUES = "ListQueues"
GET_QUEUE = "GetQueue"
LIST_COMPUTE_NODE_GROUPS = "ListComputeNodeGroups"
GET_COMPUTE_NODE_GROUP = "GetComputeNodeGroup"
LIST_TAGS_FOR_RESOURCE = "ListTagsForResource"

#: Every PCS operation this client can call, and the aioboto3 method of each: reads only.
#: Nothing that changes PCS, nor RegisterComputeNodeGroupInstance (its answer is a secret).
OPERATIONS: Mapping[str, str] = MappingProxyType(
    {
        GET_CLUSTER: "get_cluster",
        LIST_CLUSTERS: "list_clusters",
        LIST_QUEUES: "list_queues",
        GET_QUEUE: "get_queue",
        LIST_COMPUTE_NODE_GROUPS: "list_compute_node_groups",
        GET_COMPUTE_NODE_GROUP: "get_compute_node_group",
        LIST_TAGS_FOR_RESOURCE: "list_tags_for_resource",
    }
)

#: What each operation reads, for messages.
_NOUNS = {
    GET_CLUSTER: "cluster",
    LIST_CLUSTERS: "cluster",
    LIST_QUEUES: "cluster",
    GET_QUEUE: "queue",
    LIST_COMPUTE_NODE_GROUPS: "cluster",
    GET_COMPUTE_NODE_GROUP: "compute node group",
    LIST_TAGS_FOR_RESOURCE: "resource",
}

T = TypeVar("T")
R = TypeVar("R", "FetchedCluster", "FetchedWire")


@dataclass(frozen=True, slots=True)
class FetchedCluster:
    """A GetCluster answer: the cluster, its JSON form for caches, and the AWS request id."""

    cluster: Cluster
    wire: dict[str, Any]
    request_id: str | None


@dataclass(frozen=True, slots=True)
class FetchedWire:
    """Another operation's answer in its JSON form (datetimes as ISO 8601), and its request id."""

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
        account: str = "default",
    ) -> None:
        self._client = client
        #: Where calls go: the endpoint URL and region; part of every cache key.
        self.endpoint = endpoint
        #: Whose credentials the calls carry (see `account_of`); part of every cache key.
        self.account = account
        self.limiter = limiter
        self.breaker = breaker
        self._observer = observer or NoObserver()
        self._target = CallTarget(
            region=str(getattr(client.meta, "region_name", "") or ""),
            address=str(getattr(client.meta, "endpoint_url", "") or ""),
        )
        # Every HTTP attempt is reported, the SDK's retries included: PCS counts them all.
        client.meta.events.register(f"response-received.{SERVICE_NAME}", self._attempted)
        if limiter is not None:
            # Every HTTP attempt takes a token, the SDK's retries included: the rate is
            # what PCS receives, not how many calls the gateway started.
            client.meta.events.register(f"before-send.{SERVICE_NAME}", self._take_token)

    def _attempted(
        self,
        event_name: str = "",
        response_dict: Mapping[str, Any] | None = None,
        parsed_response: Mapping[str, Any] | None = None,
        exception: BaseException | None = None,
        **_: Any,
    ) -> None:
        if isinstance(exception, errors.PcsError):
            return  # held back by the gateway's rate budget: PCS never saw it
        operation = event_name.rpartition(".")[2]
        self._observer.attempted(operation, _attempt_outcome(response_dict, parsed_response))

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
                account=await account_of(settings, session, credentials),
            )

    async def get_cluster(self, identifier: str) -> FetchedCluster:
        """GetCluster by name or id, within the rate limit and the breaker; raises PcsError."""
        params = {"clusterIdentifier": identifier}
        return await self._call(GET_CLUSTER, identifier, params, _read_cluster)

    async def list_clusters(self, *, max_results: int, next_token: str | None) -> FetchedWire:
        """One page of ListClusters: the `clusters` summaries and the nextToken."""
        params = _paging({}, max_results, next_token)
        return await self._call(LIST_CLUSTERS, "", params, _page_of("clusters"))

    async def list_queues(
        self, cluster: str, *, max_results: int, next_token: str | None
    ) -> FetchedWire:
        """One page of ListQueues of a cluster."""
        params = _paging({"clusterIdentifier": cluster}, max_results, next_token)
        return await self._call(LIST_QUEUES, cluster, params, _page_of("queues"))

    async def list_compute_node_groups(
        self, cluster: str, *, max_results: int, next_token: str | None
    ) -> FetchedWire:
        """One page of ListComputeNodeGroups of a cluster."""
        params = _paging({"clusterIdentifier": cluster}, max_results, next_token)
        read = _page_of("computeNodeGroups")
        return await self._call(LIST_COMPUTE_NODE_GROUPS, cluster, params, read)

    async def get_queue(self, cluster: str, queue: str) -> FetchedWire:
        """GetQueue: the `queue` member, checked against the model's shape."""
        params = {"clusterIdentifier": cluster, "queueIdentifier": queue}
        read = _resource_of("queue", parse_queue)
        return await self._call(GET_QUEUE, cluster, params, read, resource=queue)

    async def get_compute_node_group(self, cluster: str, group: str) -> FetchedWire:
        """GetComputeNodeGroup: the `computeNodeGroup` member, checked against the model."""
        params = {"clusterIdentifier": cluster, "computeNodeGroupIdentifier": group}
        read = _resource_of("computeNodeGroup", parse_compute_node_group)
        return await self._call(GET_COMPUTE_NODE_GROUP, cluster, params, read, resource=group)

    async def list_tags_for_resource(self, arn: str) -> FetchedWire:
        """ListTagsForResource: the resource's `tags` map (absent: none)."""
        params = {"resourceArn": arn}
        return await self._call(LIST_TAGS_FOR_RESOURCE, "", params, _read_tags, resource=arn)

    async def _call(
        self,
        operation: str,
        identifier: str,
        params: dict[str, Any],
        read: Callable[[_Answer], R],
        *,
        resource: str | None = None,
    ) -> R:
        """One PCS call on the guarded path every operation shares; raises PcsError.

        `identifier` names the cluster ("" for none), `resource` what the call reads below it.

        The rate budget (per HTTP attempt), the breaker, the observer (outcome, duration
        with the rate-limit wait and the SDK's retries, AWS request id, HTTP status), and
        typed errors.
        """
        if operation not in OPERATIONS:
            raise ValueError(f"{operation} is not an operation this client may call")
        started = time.perf_counter()
        with self._observer.call(operation, self._target, identifier, resource) as report:
            try:
                named = identifier if resource is None else resource
                answer = await self._guarded(operation, named, params, read)
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
                CallResult(SUCCESS, time.perf_counter() - started, answer.request_id, 200)
            )
            return answer

    async def _guarded(
        self,
        operation: str,
        identifier: str,
        params: dict[str, Any],
        read: Callable[[_Answer], R],
    ) -> R:
        breaker = self.breaker
        try:
            if breaker is not None:
                breaker.before_call()
            answer = read(await self._send(operation, params))
        except errors.PcsError as exc:
            _log_failure(operation, identifier, exc)
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
        return answer

    async def _send(self, operation: str, params: dict[str, Any]) -> _Answer:
        method = getattr(self._client, OPERATIONS[operation])
        try:
            answer = await method(**params)
        except ClientError as exc:
            raise _from_client_error(exc, operation) from exc
        except (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError) as exc:
            raise errors.GatewayCredentialsError(
                "The gateway has no usable AWS credentials.", detail=_describe(exc)
            ) from exc
        except (TimeoutError, BotoCoreError, aiohttp.ClientError, OSError) as exc:
            raise errors.UpstreamUnavailable(
                "PCS could not be reached.", detail=_describe(exc)
            ) from exc
        metadata = answer.get("ResponseMetadata", {})
        return _Answer(answer, metadata.get("RequestId"), metadata.get("HTTPStatusCode"))


async def account_of(
    settings: Settings, session: aioboto3.Session, credentials: Mapping[str, str] | None
) -> str:
    """Whose answers the cache holds: the configured namespace, the account of the role
    in AWS_ROLE_ARN, else a digest of the access key id (never the key itself)."""
    if settings.cache_namespace:
        return settings.cache_namespace
    role = ROLE_ARN.fullmatch(os.environ.get("AWS_ROLE_ARN", "").strip())
    if role is not None:
        return role.group(1)
    key_id = (credentials or {}).get("aws_access_key_id")
    if key_id is None:
        try:
            found = await session.get_credentials()
        except Exception as exc:  # no usable credentials: calls will say so
            log.debug("no credentials to name the cache's account: %s", type(exc).__name__)
            found = None
        key_id = None if found is None else found.access_key
    if not key_id:
        return "default"
    return "key-" + hashlib.sha256(key_id.encode()).hexdigest()[:16]


def _attempt_outcome(response: Mapping[str, Any] | None, parsed: Mapping[str, Any] | None) -> str:
    """success, PCS's error code, or `unreachable` when no answer came (timeout, reset)."""
    if response is None:
        return "unreachable"
    if int(response.get("status_code", 0)) < 300:
        return SUCCESS
    code = ((parsed or {}).get("Error") or {}).get("Code")
    return str(code) if code else "unreadable"


@dataclass(frozen=True, slots=True)
class _Answer:
    body: Mapping[str, Any]
    request_id: str | None
    http_status: int | None


def _unreadable(answer: _Answer, detail: str) -> errors.UpstreamUnavailable:
    return errors.UpstreamUnavailable(
        _UNREADABLE, request_id=answer.request_id, http_status=answer.http_status, detail=detail
    )


def _member(answer: _Answer, name: str) -> dict[str, Any]:
    raw = answer.body.get(name)
    if not isinstance(raw, Mapping):
        # botocore reads an unparsable or cut-off body as an empty answer.
        raise _unreadable(answer, f"the answer has no readable {name} member")
    ready: dict[str, Any] = _json_ready(raw)
    return ready


def _parsed(
    answer: _Answer, parse: Callable[[dict[str, Any]], T], raw: dict[str, Any], what: str
) -> T:
    try:
        return parse(raw)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _unreadable(answer, f"the {what} does not fit the model: {_describe(exc)}") from exc


def _paging(params: dict[str, Any], max_results: int, next_token: str | None) -> dict[str, Any]:
    params["maxResults"] = max_results
    if next_token is not None:
        params["nextToken"] = next_token
    return params


def _page_of(member: str) -> Callable[[_Answer], FetchedWire]:
    def read(answer: _Answer) -> FetchedWire:
        items = answer.body.get(member)
        token = answer.body.get("nextToken")
        if items is None:
            items = []
        if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
            raise _unreadable(answer, f"the {member} member is not a list of summaries")
        if token is not None and not isinstance(token, str):
            raise _unreadable(answer, "the nextToken is not a string")
        wire: dict[str, Any] = {"items": _json_ready(items), "nextToken": token}
        return FetchedWire(wire, answer.request_id)

    return read


def _resource_of(
    member: str, parse: Callable[[dict[str, Any]], object]
) -> Callable[[_Answer], FetchedWire]:
    def read(answer: _Answer) -> FetchedWire:
        raw = _member(answer, member)
        _parsed(answer, parse, raw, member)
        return FetchedWire(raw, answer.request_id)

    return read


def _read_cluster(answer: _Answer) -> FetchedCluster:
    raw = _member(answer, "cluster")
    cluster = _parsed(answer, parse_cluster, raw, "cluster")
    return FetchedCluster(cluster=cluster, wire=raw, request_id=answer.request_id)


def _read_tags(answer: _Answer) -> FetchedWire:
    tags = answer.body.get("tags") or {}
    if not isinstance(tags, Mapping):
        raise _unreadable(answer, "the tags member is not a map")
    return FetchedWire({str(k): str(v) for k, v in tags.items()}, answer.request_id)


def _from_client_error(exc: ClientError, operation: str = GET_CLUSTER) -> errors.PcsError:
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
        message = _MESSAGES[code].format(noun=_NOUNS.get(operation, "resource"))
        return known(message, **members)
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


def _log_failure(operation: str, identifier: str, exc: errors.PcsError) -> None:
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
            "%s %s failed: %s%s (request id %s): %s",
            operation,
            identifier,
            type(exc).__name__,
            f" {exc.aws_error_code}" if exc.aws_error_code else "",
            exc.request_id or "none",
            exc.detail or _describe(exc),
        )


# Messages are the gateway's own: PCS's text can echo input and is not meant for end users.
_MESSAGES = {
    "ResourceNotFoundException": "No {noun} with this identifier exists.",
    "ValidationException": "PCS rejected the request's input.",
    "ThrottlingException": "PCS is throttling requests; retry later.",
    "ConflictException": "The request conflicts with the {noun}'s current state.",
    "AccessDeniedException": "The gateway is not allowed to read this {noun}.",
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

"""The Subscription type: live status of clusters, the cluster now and then each change."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Annotated

import strawberry
from strawberry.types import Info

from gateway.graphql.context import GatewayContext
from gateway.graphql.errors import GatewayError
from gateway.graphql.types import Cluster
from gateway.pcs import errors
from gateway.service.clusters import ClusterAnswer
from gateway.service.live import SlowConsumer, SubscriptionLimit, TokenExpired

_REGION = strawberry.argument(
    description="The region of the cluster; default the gateway's first region."
)


@strawberry.type(
    description=(
        "Live status. The gateway polls PCS once per cluster for all subscribers and sends "
        "only changes."
    )
)
class Subscription:
    @strawberry.subscription(
        description=(
            "A cluster by name or id: first the cluster as it is now, then one event each "
            "time any of its fields changes. A cluster that disappears ends the subscription "
            "with a NOT_FOUND error; a failed poll sends nothing (ageSeconds tells an event's "
            "age)."
        )
    )
    async def cluster_updated(
        self,
        info: Info[GatewayContext, None],
        identifier: Annotated[
            str, strawberry.argument(description="The cluster's name or its id (pcs_...).")
        ],
        region: Annotated[str | None, _REGION] = None,
    ) -> AsyncGenerator[Cluster, None]:
        async for answer in _updates(info, identifier, region):
            yield answer  # type: ignore[misc]

    @strawberry.subscription(
        description=(
            "Several clusters by name or id: first each cluster as it is now, then one event "
            "each time any field of one of them changes. One of them not found, or "
            "disappearing, sends one event with a NOT_FOUND error naming it (resourceId) and "
            "the others go on; the subscription completes once none is left."
        )
    )
    async def clusters_updated(
        self,
        info: Info[GatewayContext, None],
        identifiers: Annotated[
            list[str],
            strawberry.argument(description="Names or ids; at most the gateway's batch limit."),
        ],
        region: Annotated[str | None, _REGION] = None,
    ) -> AsyncGenerator[Cluster, None]:
        limit = info.context.settings.max_batch_size
        if len(identifiers) > limit:
            raise GatewayError(
                f"A batch may ask for at most {limit} clusters.", "BAD_USER_INPUT", limit=limit
            )
        if not identifiers:
            return
        streams = [_updates(info, identifier, region) for identifier in dict.fromkeys(identifiers)]
        async for event in _merged(streams):
            # An exception as the event: the field resolves to it, so the `next` payload
            # carries it in `errors` (path clustersUpdated) and the stream goes on.
            yield event  # type: ignore[misc]


async def _updates(
    info: Info[GatewayContext, None], identifier: str, region: str | None
) -> AsyncGenerator[ClusterAnswer, None]:
    """One cluster's updates, its failures in the error contract."""
    context = info.context
    live = context.live
    if live is None or context.regions is None:
        raise GatewayError("Subscriptions are not available on this gateway.", "BAD_REQUEST")
    services = context.regions.get(region)
    caller = context.caller
    stream = live.updates(
        services.clusters,
        services.name,
        identifier,
        # Counted by principal: a partition is shared by every caller of the same scopes.
        caller="" if caller is None else caller.subject or "",
        expires_at=None if caller is None else caller.expires_at,
    )
    try:
        async for answer in stream:
            yield answer
    except SubscriptionLimit as exc:
        raise GatewayError(str(exc), "TOO_MANY_SUBSCRIPTIONS") from None
    except TokenExpired as exc:
        raise GatewayError(str(exc), "UNAUTHENTICATED") from None
    except SlowConsumer:
        raise GatewayError(
            "This subscription fell too far behind the events sent to it and was ended.",
            "SLOW_CONSUMER",
        ) from None
    finally:
        await stream.aclose()


async def _merged(
    streams: Sequence[AsyncIterator[ClusterAnswer]],
) -> AsyncIterator[ClusterAnswer | errors.ResourceNotFound]:
    """Events of several streams as they come.

    A cluster not found ends its own stream only: its error is an event (sent as a `next`
    payload's errors), and the others go on. Any other failure (an expired token, a slow
    consumer, a limit) ends them all.
    """
    queue: asyncio.Queue[ClusterAnswer | Exception | None] = asyncio.Queue(1)

    async def pump(stream: AsyncIterator[ClusterAnswer]) -> None:
        try:
            async for answer in stream:
                await queue.put(answer)
        except Exception as exc:  # the stream's end, which the merge judges
            await queue.put(exc)
        else:
            await queue.put(None)

    tasks = [asyncio.create_task(pump(stream)) for stream in streams]
    running = len(tasks)
    try:
        while running:
            item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, errors.ResourceNotFound):
                running -= 1
                yield item
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["Subscription"]

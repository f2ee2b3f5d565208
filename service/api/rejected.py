"""Rejected and held webhook deliveries (issue 10 item 4): list them, read one, replay one.

`GET /v1/rejected-deliveries` lists refusals and held deliveries oldest first (keyset pages like
the other lists); `GET /v1/rejected-deliveries/{id}` adds the raw request; `POST …/{id}/replay`
runs it through today's adapter and the ledger (service/replay.py), `?dry_run=true` rolled back.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, Parameter

from service import problems, rejections, replay
from service.api.bodies import since_param
from service.api.orders import Since
from service.api.paging import Cursor, Limit
from service.auth import SECURITY, requires
from service.db import BIGINT_MAX
from service.problems import ConflictError, NotFoundError
from service.rejections import RejectedDelivery, RejectedDeliveryDetail
from service.replay import ReplayResult

RejectedId = Annotated[int, Parameter(ge=1, le=BIGINT_MAX, description="The rejected delivery's id.")]
Gateway = Annotated[str | None, Parameter(description="Only this gateway's deliveries.")]
Reason = Annotated[str | None, Parameter(description="Only this reason: signature, malformed, unstorable…")]
Verified = Annotated[bool | None, Parameter(description="true: only held deliveries; false: only refusals.")]
DryRun = Annotated[bool, Parameter(description="Apply in a transaction that is rolled back: what would happen.")]


class RejectedPage(msgspec.Struct, kw_only=True):
    items: list[RejectedDelivery]
    next_cursor: str | None  # pass as `cursor` for the next page; null on the last page


@get(
    "/v1/rejected-deliveries",
    opt=requires("recon:read"),
    security=SECURITY,
    operation_id="listRejectedDeliveries",
    tags=["rejected deliveries"],
    responses=problems.responses(),
)
async def list_rejected(
    state: State,
    provider: FromQuery[Gateway] = None,
    reason: FromQuery[Reason] = None,
    verified: FromQuery[Verified] = None,
    since: Since = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> RejectedPage:
    """Refused deliveries and held ones (`verified`: signed, but not processable as sent), oldest first."""
    async with state.pool.acquire() as conn:
        items, next_cursor = await rejections.list_rejected(
            conn,
            limit=limit,
            provider=provider,
            reason=reason,
            verified=verified,
            since=since_param("since", since),
            cursor=cursor,
        )
    return RejectedPage(items=items, next_cursor=next_cursor)


@get(
    "/v1/rejected-deliveries/{rejected_id:int}",
    opt=requires("recon:read"),
    security=SECURITY,
    operation_id="getRejectedDelivery",
    tags=["rejected deliveries"],
    responses=problems.responses(404),
)
async def get_rejected(state: State, rejected_id: FromPath[RejectedId]) -> RejectedDeliveryDetail:
    """One row with its raw request: method, query string, kept headers, body (base64)."""
    async with state.pool.acquire() as conn:
        found = await rejections.get(conn, rejected_id)
    if found is None:
        raise NotFoundError(f"no rejected delivery {rejected_id}")
    return found


@post(
    "/v1/rejected-deliveries/{rejected_id:int}/replay",
    opt=requires("recon:write"),
    security=SECURITY,
    operation_id="replayRejectedDelivery",
    tags=["rejected deliveries"],
    status_code=200,
    responses=problems.responses(404, 409),
)
async def replay_rejected(
    state: State, rejected_id: FromPath[RejectedId], dry_run: FromQuery[DryRun] = False
) -> ReplayResult:
    """Verify, parse and apply the stored request again; `ok: false` with `error` when it still fails."""
    try:
        return await replay.replay(state.pool, state.gateways, rejected_id, dry_run=dry_run)
    except replay.UnknownRejectionError as exc:
        raise NotFoundError(str(exc)) from None
    except replay.NotReplayableError as exc:
        raise ConflictError(str(exc)) from None


routes = [list_rejected, get_rejected, replay_rejected]

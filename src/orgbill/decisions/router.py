from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request, Response

from orgbill.auth.caller import request_caller
from orgbill.auth.dependencies import SessionDep, current_org_access
from orgbill.auth.permissions import Perm
from orgbill.auth.principal import CallerRider, OrgAccess
from orgbill.decisions import schemas, service
from orgbill.entitlements.service import plan_for_access
from orgbill.kit.routing import TransactionalRoute, get_session, rides_with_caller, writes_when
from orgbill.kit.time import utcnow
from orgbill.plans.dependencies import CatalogStoreDep
from orgbill.plans.store import CatalogStore

router = APIRouter(route_class=TransactionalRoute, tags=["decisions"])

# Deciding is the product's own call (its API key); among users, owners and admins. A
# suspended org still gets its decision (allowed: false, code org_suspended), as a 200.
Decide = Annotated[OrgAccess, Depends(current_org_access(Perm.USAGE_WRITE, allow_suspended=True))]
Settle = Annotated[OrgAccess, Depends(current_org_access(Perm.USAGE_WRITE))]
ReadReservation = Annotated[OrgAccess, Depends(current_org_access(Perm.USAGE_READ))]


async def decision_time(request: Request) -> datetime:
    """The instant a decision is taken at: the one the caller's lookup read the metric's
    standing at, when it carried it (tests move it to see holds expire)."""
    return service.ridden_instant(request_caller(request).principal) or utcnow()


def _standing_rider(body: bytes) -> CallerRider | None:
    return service.standing_rider(body, utcnow())


Now = Annotated[datetime, Depends(decision_time)]


async def _reserves(request: Request) -> bool:
    """Only a reserving check writes: a plain one runs on the read-only engine (one round
    trip per query, and on SQLite it never waits for the write lock)."""
    try:
        body = json.loads(await request.body())
    except (ValueError, RecursionError):
        return False  # refused as malformed before anything runs
    return isinstance(body, dict) and body.get("reserve") is True


@router.post("/check", response_model=schemas.MetricDecision | schemas.FeatureDecision)
@writes_when(_reserves)
@rides_with_caller(_standing_rider)
async def check(
    body: Annotated[schemas.CheckRequest, Body()], access: Decide, now: Now, request: Request
) -> Response:
    """May the organization use `quantity` more of a metric, of `credits`, or a feature —
    and, with `reserve`, hold it until committed, released or expired. Always 200 for a
    decision: `allowed` and `code` say what it is."""
    # The hot path takes no further dependencies: each costs measurable time.
    session = await get_session(request)
    store: CatalogStore = request.app.state.catalog_store
    plan = await plan_for_access(session, access, store, now)
    decision = await service.check(session, access, plan, store.catalog, body, now)
    # The hot path: the service built a validated model; serialise it once, skipping
    # FastAPI's re-validation of the return value.
    return Response(decision.model_dump_json(), media_type="application/json")


@router.get("/reservations/{reservation_id}")
async def get_reservation(
    reservation_id: uuid.UUID, access: ReadReservation, session: SessionDep, now: Now
) -> schemas.ReservationOut:
    return await service.get_reservation(session, access, reservation_id, now)


@router.post("/reservations/{reservation_id}/commit")
async def commit_reservation(
    reservation_id: uuid.UUID,
    access: Settle,
    session: SessionDep,
    store: CatalogStoreDep,
    now: Now,
    body: Annotated[schemas.ReservationCommit | None, Body()] = None,
) -> schemas.ReservationOut:
    """Records the held usage (or spends the held credits) exactly once and frees the rest.
    Repeating it returns the same outcome; an expired or released reservation is 409."""
    plan = await plan_for_access(session, access, store, now)
    commit = body or schemas.ReservationCommit()
    return await service.commit(session, access, plan, store.catalog, reservation_id, commit, now)


@router.post("/reservations/{reservation_id}/release")
async def release_reservation(
    reservation_id: uuid.UUID, access: Settle, session: SessionDep, now: Now
) -> schemas.ReservationOut:
    """Frees the whole hold. Repeating it returns the same outcome; an expired or committed
    reservation is 409."""
    return await service.release(session, access, reservation_id, now)

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from orgbill.auth import schemas, service
from orgbill.auth.dependencies import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    SessionDep,
    SettingsDep,
    UserDep,
)
from orgbill.auth.jwt import issue_token
from orgbill.kit.crypto import random_token
from orgbill.kit.routing import TransactionalRoute

router = APIRouter(route_class=TransactionalRoute, tags=["identity"])


@router.post("/auth/register", status_code=status.HTTP_201_CREATED)
async def register_user(body: schemas.UserCreate, session: SessionDep) -> schemas.User:
    user = await service.create_user(session, body.email, body.password, body.name)
    return schemas.User.model_validate(user)


@router.post("/auth/token")
async def create_access_token(
    body: schemas.TokenRequest,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
    response: Response,
) -> schemas.Token:
    guard = request.app.state.sign_in_guard
    user = await service.authenticate(session, body.email, body.password, guard)
    access_token, ttl = issue_token(settings, user.id)
    secure = settings.cookie_secure
    response.set_cookie(
        SESSION_COOKIE, access_token, max_age=ttl, httponly=True, secure=secure, samesite="lax"
    )
    # Readable by the page's script so it can echo it in X-CSRF-Token (double submit).
    response.set_cookie(
        CSRF_COOKIE, random_token(), max_age=ttl, httponly=False, secure=secure, samesite="lax"
    )
    return schemas.Token(access_token=access_token, expires_in=ttl)


@router.get("/me")
async def get_me(user: UserDep, session: SessionDep) -> schemas.Me:
    return await service.me(session, user)

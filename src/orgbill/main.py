"""The ASGI app: ``orgbill.main:app``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI
from fastapi.routing import APIRoute

from orgbill import migrate
from orgbill.admin.credits_router import router as credits_admin_router
from orgbill.admin.router import router as admin_router
from orgbill.auth.last_used import ApiKeyUsageRecorder
from orgbill.auth.router import router as auth_router
from orgbill.billing.router import credits_router as credit_checkout_router
from orgbill.billing.router import router as billing_router
from orgbill.config import Settings, get_settings
from orgbill.credits.router import router as credits_router
from orgbill.db import Database
from orgbill.decisions.router import router as decisions_router
from orgbill.errors import register_error_handlers
from orgbill.kit.cache import Memo
from orgbill.kit.logging import configure_logging
from orgbill.kit.routing import route_marks
from orgbill.middleware.access_log import AccessLogMiddleware
from orgbill.middleware.body_limit import BodySizeLimitMiddleware
from orgbill.middleware.head import HeadAsGetMiddleware
from orgbill.middleware.ratelimit import (
    CallerMiddleware,
    CallerPaths,
    ClientIpCharge,
    RouteTable,
)
from orgbill.middleware.request_id import RequestIdMiddleware
from orgbill.openapi import install_openapi, operation_id
from orgbill.operations.readiness import check_readiness
from orgbill.operations.router import DOCS_ASSETS_PATH, mount_operations
from orgbill.organizations.router import router as organizations_router
from orgbill.plans.catalog import load_catalog
from orgbill.plans.router import router as plans_router
from orgbill.plans.store import CatalogStore
from orgbill.ratelimit.limiter import RateLimiter, RedisFallback, redis_client
from orgbill.ratelimit.signin import SignInGuard
from orgbill.stripe_sync.admin_router import router as stripe_admin_router
from orgbill.stripe_sync.client import StripeGateway
from orgbill.stripe_sync.router import router as stripe_webhook_router
from orgbill.usage.router import router as usage_router
from orgbill.webhooks_out.dispatcher import Dispatcher
from orgbill.webhooks_out.router import router as webhooks_out_router

API_PREFIX = "/api/v1"
_READY_CACHE_SECONDS = 1.0
# Never rate limited (contract), with the assets /docs and /redoc load.
OPERATIONAL_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc"}
)
# Only the docs' own assets: any other path under /docs or /redoc is charged like any other.
OPERATIONAL_PREFIXES = (f"{DOCS_ASSETS_PATH}/",)


def _operation_id(route: APIRoute) -> str:
    return operation_id(route)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, access_log=settings.access_log)
    fallback_catalog = load_catalog(settings.plans_file)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database.from_settings(settings)
        app.state.database = database
        app.state.api_key_usage = ApiKeyUsageRecorder(database)
        dispatcher = None
        if settings.webhook_dispatch:
            # Outbound webhooks are delivered from every server process (see dispatcher.py).
            dispatcher = Dispatcher(database, settings, catalog_store)
            await dispatcher.start()
        app.state.webhook_dispatcher = dispatcher
        try:
            yield
        finally:
            if dispatcher is not None:
                await dispatcher.stop()
            await app.state.api_key_usage.drain()
            if redis is not None:
                await redis.aclose()
            await database.dispose()

    app = FastAPI(
        title="orgbill",
        version=version("orgbill"),
        summary="Organizations, members, API keys, plans, Stripe billing and usage.",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        # Served by operations/router.py from bundled assets (no CDN).
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.schema_head = migrate.head_revision()
    catalog_store = CatalogStore(fallback_catalog)
    app.state.catalog_store = catalog_store
    app.state.stripe = StripeGateway.from_settings(settings)
    redis = redis_client(settings)
    fallback = RedisFallback(redis is not None)
    rate_limiter = (
        RateLimiter.build(redis, settings, fallback) if settings.rate_limit_enabled else None
    )
    app.state.rate_limiter = rate_limiter
    app.state.sign_in_guard = SignInGuard(redis, settings.rate_limit_key_prefix, fallback)
    register_error_handlers(app)

    # Routing tries the routers in this order, each route in turn: the hot paths first (Stripe's
    # webhooks, which arrive in bulk, then the decision call's few routes, then the profile
    # read's). No two routers' paths overlap, so the order changes nothing else.
    app.include_router(stripe_webhook_router, prefix=API_PREFIX)
    for router in (
        decisions_router,
        organizations_router,
        auth_router,
        plans_router,
        admin_router,
        billing_router,
        stripe_admin_router,
        usage_router,
        credits_router,
        credit_checkout_router,
        credits_admin_router,
        webhooks_out_router,
    ):
        app.include_router(router, prefix=API_PREFIX)

    mount_operations(app)
    install_openapi(app, API_PREFIX)

    # Probes may come often: the database is asked at most once a second per instance.
    app.state.readiness = Memo(
        lambda: check_readiness(app.state.database, app.state.schema_head), _READY_CACHE_SECONDS
    )

    # Added last is outermost: request id wraps the access log, which wraps the body-size
    # guard, which wraps the caller and rate limit step, which wraps HEAD-as-GET and the app.
    # The access log sits outside the guard (ARCHITECTURE.md lists it inside) so that it
    # records the 413s the guard answers, not what the app made of the aborted body read.
    app.add_middleware(HeadAsGetMiddleware)
    app.add_middleware(
        CallerMiddleware,
        routes=RouteTable(app.openapi, lambda: route_marks(app.routes)),
        settings=settings,
        limiter=rate_limiter,
        catalog_store=catalog_store,
        paths=CallerPaths(
            exempt=OPERATIONAL_PATHS,
            exempt_prefixes=OPERATIONAL_PREFIXES,
            stripe_webhook=f"{API_PREFIX}/webhooks/stripe",
            admin_prefix=f"{API_PREFIX}/admin/",
        ),
    )
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_body_bytes=settings.max_body_bytes,
        ip_charge=ClientIpCharge(settings, rate_limiter),
    )
    app.add_middleware(AccessLogMiddleware, log_probes=settings.access_log_probes)
    app.add_middleware(RequestIdMiddleware)
    return app


def __getattr__(name: str) -> FastAPI:
    # `orgbill.main:app` builds the app on first use, so importing this module reads no settings.
    if name == "app":
        global app
        app = create_app()
        return app
    raise AttributeError(name)

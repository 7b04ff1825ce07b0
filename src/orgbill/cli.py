"""``orgbill migrate | serve | demo | create-superadmin | plans sync | stripe sync``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqlalchemy import select

from orgbill import migrate
from orgbill.auth import service as auth_service
from orgbill.config import Settings, get_settings
from orgbill.db import Database
from orgbill.errors import Conflict
from orgbill.kit.crypto import random_token
from orgbill.models import Membership, Organization, User
from orgbill.organizations import schemas as org_schemas
from orgbill.organizations import service as org_service
from orgbill.plans.catalog import CatalogError, load_catalog
from orgbill.plans.service import SyncResult, read_plans_file, sync_catalog
from orgbill.plans.store import CatalogStore
from orgbill.stripe_sync.client import StripeGateway, StripeUnavailable
from orgbill.stripe_sync.reconcile import Reconciler, ReconcileReport

DEMO_EMAIL = "demo@orgbill.example"
DEMO_SLUG = "demo-org"


async def seed_demo(settings: Settings) -> dict[str, Any]:
    database = Database.from_settings(settings)
    try:
        async with database.session(writes=True) as session:
            user = await session.scalar(select(User).where(User.email == DEMO_EMAIL))
            password: str | None = None
            if user is None:
                password = random_token(12)
                user = await auth_service.create_user(session, DEMO_EMAIL, password, "Demo User")
            org = await session.scalar(
                select(Organization)
                .join(Membership, Membership.organization_id == Organization.id)
                .where(Organization.slug == DEMO_SLUG, Membership.user_id == user.id)
            )
            if org is None:
                org = await org_service.create_organization(
                    session, user, org_schemas.OrganizationCreate(name="Demo Org", slug=DEMO_SLUG)
                )
            key, plaintext = await org_service.create_initial_api_key(
                session, org, settings, name="demo"
            )
            await session.commit()
    finally:
        await database.dispose()
    return {
        "user": {"email": DEMO_EMAIL, "password": password or "(unchanged since first demo run)"},
        "organization": {"id": str(org.id), "name": org.name, "slug": org.slug},
        "api_key": plaintext,
        "api_key_prefix": key.prefix,
        "try": f"curl -s -H 'X-Api-Key: {plaintext}' "
        f"http://127.0.0.1:8000/api/v1/organizations/profile/{org.id}",
    }


async def create_superadmin(settings: Settings, email: str, password: str) -> dict[str, Any]:
    database = Database.from_settings(settings)
    try:
        async with database.session(writes=True) as session:
            existing = await session.scalar(
                select(User).where(User.email == auth_service.normalize_email(email))
            )
            if existing is not None:
                existing.is_superadmin = True
                user = existing
            else:
                user = await auth_service.create_user(
                    session, email, password, email.split("@")[0], is_superadmin=True
                )
            await session.commit()
    finally:
        await database.dispose()
    return {"id": str(user.id), "email": user.email, "is_superadmin": True}


async def sync_plans(settings: Settings, path: Path | None = None) -> SyncResult:
    """Validate the plans file fully, then load it in one transaction (or change nothing)."""
    document = read_plans_file(path or settings.plans_file)
    database = Database.from_settings(settings)
    try:
        async with database.session(writes=True) as session:
            result = await sync_catalog(session, document)
            await session.commit()
    finally:
        await database.dispose()
    return result


async def sync_stripe(
    settings: Settings, organization_id: uuid.UUID | None = None
) -> ReconcileReport:
    """Repair drift between Stripe and our mirror through the webhook handlers."""
    gateway = StripeGateway.from_settings(settings)
    if gateway is None:
        raise StripeUnavailable("ORGBILL_STRIPE_API_KEY is not set")
    database = Database.from_settings(settings)
    try:
        store = CatalogStore(load_catalog(settings.plans_file))
        return await Reconciler(database, gateway, store).run(organization_id)
    finally:
        await database.dispose()


# orgbill decides the client address itself from ORGBILL_TRUSTED_PROXIES (kit/client_ip.py):
# uvicorn must not rewrite it first from forwarded headers (by default it believes them from
# 127.0.0.1, so any local client could pick its address, and with it a fresh rate bucket).
UVICORN_OPTIONS = {"proxy_headers": False, "forwarded_allow_ips": "", "access_log": False}


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    uvicorn.run(
        "orgbill.main:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        **UVICORN_OPTIONS,  # access log: orgbill writes its own JSON line
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orgbill", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations (alembic upgrade head)")
    serve = sub.add_parser("serve", help="serve the API with uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    sub.add_parser("demo", help="seed a demo user, org and API key; print them as JSON")
    admin = sub.add_parser("create-superadmin", help="create (or promote) a superadmin user")
    admin.add_argument("email")
    admin.add_argument("--password", required=True)
    plans = sub.add_parser("plans", help="plan catalog").add_subparsers(dest="plans_command")
    plans.required = True
    plans_sync = plans.add_parser("sync", help="load the plans file into the database")
    plans_sync.add_argument("--file", type=Path, help="plans file (default: ORGBILL_PLANS_FILE)")
    stripe_cmd = sub.add_parser("stripe", help="Stripe billing").add_subparsers(
        dest="stripe_command"
    )
    stripe_cmd.required = True
    stripe_sync = stripe_cmd.add_parser(
        "sync", help="re-read customers, subscriptions and invoices from Stripe; repair drift"
    )
    stripe_sync.add_argument("--org", type=uuid.UUID, help="only this organization id")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = get_settings()
    except ValueError as exc:
        print(f"orgbill: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "migrate":
        migrate.upgrade(settings)
        print("database is at the latest migration")
    elif args.command == "serve":
        _serve(args)
    elif args.command == "demo":
        print(json.dumps(asyncio.run(seed_demo(settings)), indent=2))
    elif args.command == "create-superadmin":
        if len(args.password) < 8:
            print("orgbill: password must be at least 8 characters", file=sys.stderr)
            return 2
        try:
            result = asyncio.run(create_superadmin(settings, args.email, args.password))
        except Conflict as exc:
            print(f"orgbill: {exc.message}", file=sys.stderr)
            return 1
        print(json.dumps(result))
    elif args.command == "plans":
        try:
            synced = asyncio.run(sync_plans(settings, args.file))
        except CatalogError as exc:
            print(f"orgbill: plans file rejected, nothing changed: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(asdict(synced)))
    elif args.command == "stripe":
        try:
            report = asyncio.run(sync_stripe(settings, args.org))
        except StripeUnavailable as exc:
            print(f"orgbill: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(report.as_dict(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

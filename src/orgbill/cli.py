"""orgbill's command line: migrate, serve, demo, create-superadmin, plans sync, stripe sync,
webhooks dispatch.

Every failure a user can cause (a bad or unreachable database, a missing plans file, a busy
port) is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from orgbill import migrate
from orgbill.auth import schemas as auth_schemas
from orgbill.auth import service as auth_service
from orgbill.config import Settings, get_settings
from orgbill.db import Database
from orgbill.errors import OrgbillError
from orgbill.kit.crypto import random_token
from orgbill.kit.logging import log_config
from orgbill.kit.metrics import MULTIPROC_ENV
from orgbill.kit.time import utcnow
from orgbill.models import Membership, Organization, OrganizationStatus, User
from orgbill.organizations import schemas as org_schemas
from orgbill.organizations import service as org_service
from orgbill.plans.catalog import CatalogError, load_catalog, read_plans_file
from orgbill.plans.service import SyncResult, sync_catalog
from orgbill.plans.store import CatalogStore
from orgbill.stripe_sync.client import StripeGateway, StripeUnavailable
from orgbill.stripe_sync.reconcile import Reconciler, ReconcileReport
from orgbill.webhooks_out.dispatcher import Dispatcher

DEMO_EMAIL = "demo@orgbill.example"
DEMO_SLUG = "demo-org"
DEMO_KEY_NAME = "demo"
DEFAULT_BASE_URL = "http://127.0.0.1:8000"


class CliError(Exception):
    """A failure reported as one line on stderr."""


async def seed_demo(settings: Settings, base_url: str = DEFAULT_BASE_URL) -> dict[str, Any]:
    """The demo user, org and a fresh key; re-runs reuse the org and revoke the last key."""
    database = Database.from_settings(settings)
    try:
        async with database.session(writes=True) as session:
            user = await session.scalar(select(User).where(User.email == DEMO_EMAIL))
            password: str | None = None
            if user is None:
                password = random_token(12)
                user = await auth_service.create_user(session, DEMO_EMAIL, password, "Demo User")
            # The demo user's live demo org; a deleted one is left deleted (its keys are dead).
            org = await session.scalar(
                select(Organization)
                .join(Membership, Membership.organization_id == Organization.id)
                .where(
                    Membership.user_id == user.id,
                    Organization.status != OrganizationStatus.DELETED,
                    Organization.slug.startswith(DEMO_SLUG),
                )
                .order_by(Organization.created_at)
                .limit(1)
            )
            if org is None:
                # No slug asked for: `demo-org` when free, else with a suffix (another org, or
                # the deleted demo org, may hold it).
                org, _ = await org_service.create_organization(
                    session,
                    user,
                    org_schemas.OrganizationCreate(name="Demo Org"),
                    CatalogStore(load_catalog(settings.plans_file)),
                )
            revoked = await org_service.revoke_keys(session, org.id, utcnow(), name=DEMO_KEY_NAME)
            key, plaintext = await org_service.create_initial_api_key(
                session, org, settings, name=DEMO_KEY_NAME
            )
            await session.commit()
    finally:
        await database.dispose()
    base = base_url.rstrip("/")
    return {
        "user": {"email": DEMO_EMAIL, "password": password or "(unchanged since first demo run)"},
        "organization": {"id": str(org.id), "name": org.name, "slug": org.slug},
        "api_key": plaintext,
        "api_key_prefix": key.prefix,
        "revoked_previous_demo_keys": revoked,
        "docs": f"{base}/docs",
        "try": f"curl -s -H 'X-Api-Key: {plaintext}' {base}/api/v1/organizations/profile/{org.id}",
    }


_EMAIL: TypeAdapter[str] = TypeAdapter(auth_schemas.Email)
_PASSWORD: TypeAdapter[str] = TypeAdapter(auth_schemas.Password)


def _given(adapter: TypeAdapter[str], what: str, value: str) -> str:
    """The value as the API would take it (an email checked, a password trimmed), so the
    account signs in with what was given here."""
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        reason = exc.errors()[0].get("msg", "invalid") if exc.errors() else "invalid"
        raise CliError(f"{what}: {reason}") from None


async def create_superadmin(settings: Settings, email: str, password: str) -> dict[str, Any]:
    email = _given(_EMAIL, "email", email)
    password = _given(_PASSWORD, "password", password)
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


async def dispatch_webhooks(settings: Settings, *, once: bool = False) -> None:
    """The outbound webhook dispatcher alone (as a separate worker; servers started with
    ORGBILL_WEBHOOK_DISPATCH=false then leave delivery to it). Runs until interrupted, or with
    `once` until nothing is due."""
    database = Database.from_settings(settings)
    dispatcher = Dispatcher(database, settings, CatalogStore(load_catalog(settings.plans_file)))
    try:
        if once:
            await dispatcher.drain()
        else:
            await dispatcher.start()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            await stop.wait()
    finally:
        await dispatcher.stop()
        await database.dispose()


# orgbill decides the client address itself from ORGBILL_TRUSTED_PROXIES (kit/client_ip.py):
# uvicorn must not rewrite it first from forwarded headers (by default it believes them from
# 127.0.0.1, so any local client could pick its address, and with it a fresh rate bucket).
# `http`: uvicorn's httptools protocol with a bound on a request's head (kit/http_head.py).
UVICORN_OPTIONS = {
    "proxy_headers": False,
    "forwarded_allow_ips": "",
    "access_log": False,
    "http": "orgbill.kit.http_head:BoundedHeadProtocol",
}


def run_migrations(settings: Settings) -> str:
    """Upgrade to head; says where the database was and where it is now."""
    before = migrate.current_revision(settings)
    head = migrate.head_revision()
    if before == head:
        return f"database already at the latest migration {head}; nothing to do"
    migrate.upgrade(settings)
    after = migrate.current_revision(settings)
    if before is None:
        return f"migrated an empty database to {after} (latest)"
    return f"migrated from {before} to {after} (latest)"


def check_port_free(host: str, port: int) -> None:
    """Bind and release the port, as uvicorn will, so a busy port fails before anything runs."""
    if not 0 <= port <= 65535:  # 0: any free port
        raise CliError(f"cannot listen on {host}:{port}: a port is 0 to 65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CliError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


@contextmanager
def metrics_directory(workers: int) -> Iterator[None]:
    """Several workers share /metrics through prometheus' multiprocess files: a fresh
    directory per run (the workers are spawned, so they read it when they import it)."""
    if workers <= 1:
        yield
        return
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        # Samples of a previous run must not add into this one.
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        yield
        return
    directory = tempfile.mkdtemp(prefix="orgbill-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)


def _serve(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn

    check_port_free(args.host, args.port)
    load_catalog(settings.plans_file)  # a missing or broken plans file fails here, once
    if args.check:
        return
    with metrics_directory(args.workers):
        uvicorn.run(
            "orgbill.main:app",
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_config=log_config(settings.log_level),
            **UVICORN_OPTIONS,  # access log: orgbill writes its own JSON line
            # A worker importing on a busy machine can take longer than uvicorn's 5 s
            # default to answer its first health check; it is not dead, let it start.
            timeout_worker_healthcheck=30,
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orgbill",
        description="orgbill: organizations, plans, Stripe billing and usage for your product. "
        "Settings come from ORGBILL_* environment variables.",
    )
    parser.add_argument("--version", action="version", version=f"orgbill {version('orgbill')}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, **kwargs)

    command("migrate", "Apply the database migrations up to the latest one.")
    serve = command("serve", "Serve the API with uvicorn (the app is orgbill.main:app).")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument("--workers", type=int, default=1, help="worker processes")
    serve.add_argument(
        "--check",
        action="store_true",
        help="only check that the port is free and the plans file loads, then exit",
    )
    demo = command("demo", "Seed a demo user, organization and API key; print them as JSON.")
    demo.add_argument(
        "--base-url", default=DEFAULT_BASE_URL, help="where the server runs, for printed URLs"
    )
    admin = command("create-superadmin", "Create (or promote) a superadmin user.")
    admin.add_argument("email")
    admin.add_argument("--password", required=True)
    plans = command("plans", "The plan catalog.").add_subparsers(
        dest="plans_command", required=True, metavar="COMMAND"
    )
    plans_sync = plans.add_parser(
        "sync",
        help="Load the plans file into the database.",
        description="Validate the plans file, then load it in one transaction.",
    )
    plans_sync.add_argument(
        "--file", type=Path, help="plans file (default: ORGBILL_PLANS_FILE, else the bundled one)"
    )
    stripe_cmd = command("stripe", "Stripe billing.").add_subparsers(
        dest="stripe_command", required=True, metavar="COMMAND"
    )
    stripe_sync = stripe_cmd.add_parser(
        "sync",
        help="Repair drift from Stripe.",
        description="Re-read customers, subscriptions and invoices from Stripe and repair drift.",
    )
    stripe_sync.add_argument("--org", type=uuid.UUID, help="only this organization id")
    webhooks_cmd = command("webhooks", "Outbound webhooks.").add_subparsers(
        dest="webhooks_command", required=True, metavar="COMMAND"
    )
    dispatch = webhooks_cmd.add_parser(
        "dispatch",
        help="Run the webhook dispatcher alone.",
        description="Deliver outbound webhooks (and notice time-driven plan changes) until "
        "interrupted: a separate worker, for servers run with ORGBILL_WEBHOOK_DISPATCH=false.",
    )
    dispatch.add_argument("--once", action="store_true", help="deliver what is due now, then exit")
    return parser


def _settings_error(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        variable = "ORGBILL_" + "_".join(str(part) for part in error["loc"]).upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(message if variable == "ORGBILL_" else f"{variable}: {message}")
    return "; ".join(problems)


def _database_name(settings: Settings) -> str:
    try:
        return make_url(settings.database_url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparsable URL)"


def _first_line(exc: BaseException) -> str:
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(cause).strip().splitlines()
    return text[0] if text else type(cause).__name__


def require_migrated(settings: Settings) -> None:
    if settings.is_sqlite:
        # Asking an SQLite file for its revision would create it: look first.
        database = make_url(settings.database_url).database
        if database and database != ":memory:" and not Path(database).exists():
            raise CliError(f"no database at {database}: run `orgbill migrate` first")
    current = migrate.current_revision(settings)
    if current != migrate.head_revision():
        state = "empty" if current is None else f"at {current}"
        raise CliError(f"the database is {state}, not the latest migration: run `orgbill migrate`")


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command in ("demo", "create-superadmin", "plans", "stripe", "webhooks"):
        require_migrated(settings)
    if args.command == "migrate":
        print(run_migrations(settings))
    elif args.command == "serve":
        _serve(args, settings)
    elif args.command == "demo":
        print(json.dumps(asyncio.run(seed_demo(settings, args.base_url)), indent=2))
    elif args.command == "create-superadmin":
        # A service's refusal (a Conflict) is one line through main's OrgbillError branch.
        print(json.dumps(asyncio.run(create_superadmin(settings, args.email, args.password))))
    elif args.command == "plans":
        try:
            synced = asyncio.run(sync_plans(settings, args.file))
        except CatalogError as exc:
            raise CliError(f"plans file rejected, nothing changed: {exc}") from exc
        print(json.dumps(asdict(synced)))
    elif args.command == "stripe":
        try:
            report = asyncio.run(sync_stripe(settings, args.org))
        except StripeUnavailable as exc:
            raise CliError(str(exc)) from exc
        print(json.dumps(report.as_dict(), indent=2))
    elif args.command == "webhooks":
        asyncio.run(dispatch_webhooks(settings, once=args.once))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = get_settings()
    except ValidationError as exc:
        print(f"orgbill: configuration error: {_settings_error(exc)}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"orgbill: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        return _run(args, settings)
    except CliError as exc:
        message = str(exc)
    except CatalogError as exc:
        message = str(exc)
    except OrgbillError as exc:  # a service's refusal (a conflict, say): its message
        message = exc.message
    except (ArgumentError, NoSuchModuleError) as exc:
        message = f"ORGBILL_DATABASE_URL is not a usable database URL: {_first_line(exc)}"
    except (
        DBAPIError,
        OSError,
        TimeoutError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
    ) as exc:
        message = f"cannot use the database {_database_name(settings)}: {_first_line(exc)}"
    except KeyboardInterrupt:
        return 130
    print(f"orgbill: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())

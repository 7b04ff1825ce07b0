"""Superadmin writes: a value the schema accepts is storable (every text field fits its
column), and the same change sent several times at once (a retry, a double click) is applied
once — no 500 from a lost insert race, no change recorded twice (the org's row is locked)."""

from __future__ import annotations

import asyncio
from typing import Any, get_args

import httpx

from orgbill.admin.schemas import AdminOrganizationUpdate
from orgbill.config import Settings
from orgbill.models import Organization
from orgbill.organizations.schemas import OrganizationCreate, OrganizationUpdate
from tests.fixtures.factories import API, assert_error, create_org, create_superadmin_user


async def test_an_org_type_past_its_column_is_422_and_one_that_fits_is_stored(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # org_type's column is VARCHAR(32): 40 characters are refused as a 422 (PostgreSQL would
    # refuse the UPDATE itself, a 500), and 32 are stored as sent.
    admin = await create_superadmin_user(client, settings)
    org = await create_org(client)
    too_long = "partner-reseller-" + "x" * 23
    response = await client.patch(
        f"{API}/admin/organizations/{org.id}", json={"org_type": too_long}, headers=admin.headers
    )
    assert_error(response, 422, "validation_error")
    widest = "partner-reseller-" + "x" * 15
    response = await client.patch(
        f"{API}/admin/organizations/{org.id}", json={"org_type": widest}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    read = await client.get(f"{API}/organizations/{org.id}", headers=org.owner.headers)
    assert read.json()["organization"]["org_type"] == widest


def test_every_text_field_written_to_an_organization_fits_its_column() -> None:
    """The pattern behind the org_type 500: a request schema's `max_length` for a field
    stored in an organization column is at most that column's width."""
    columns = {column.name: column for column in Organization.__table__.columns}
    checked = 0
    for schema in (OrganizationCreate, OrganizationUpdate, AdminOrganizationUpdate):
        for name, field in schema.model_fields.items():
            column = columns.get(name)
            length = getattr(getattr(column, "type", None), "length", None)
            if length is None:
                continue
            widths = [m.max_length for m in _metadata(field) if getattr(m, "max_length", None)]
            if not widths:  # a choice of values (an enum, a Literal) is bounded by them
                assert str not in (field.annotation, *get_args(field.annotation)), name
                continue
            assert max(widths) <= length, f"{schema.__name__}.{name}: {widths} > {length}"
            checked += 1
    assert checked >= 6


def _metadata(field: Any) -> list[Any]:
    """A field's constraints, including those of an `X | None` annotation's `X`."""
    found = list(field.metadata)
    for arg in get_args(field.annotation):
        found += list(getattr(arg, "__metadata__", ()))
    return found


async def test_concurrent_first_enterprise_contract_puts_never_answer_500(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # PUT is idempotent: the same contract sent six times at once sets it once and answers
    # 200 to each (unlocked, each read "no contract" and inserted: the losers hit the unique
    # constraint, a 500).
    admin = await create_superadmin_user(client, settings)
    body = {"starts_at": "2020-01-01T00:00:00Z", "overrides": {"max_members": 50}}
    statuses: list[int] = []
    for _ in range(3):
        org = await create_org(client)
        url = f"{API}/admin/organizations/{org.id}/enterprise"
        responses = await asyncio.gather(
            *(client.put(url, json=body, headers=admin.headers) for _ in range(6))
        )
        statuses += [r.status_code for r in responses]
        profile = await client.get(f"{API}/organizations/profile/{org.id}", headers=org.key_headers)
        assert profile.json()["plan_source"] == "enterprise"
    assert all(s < 500 for s in statuses), statuses
    assert set(statuses) == {200}, statuses


async def test_concurrent_identical_suspensions_are_recorded_as_one_change(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # Five identical `is_suspended: true` PATCHes at once change the org once (ACTIVE ->
    # SUSPENDED): one audit entry. Unlocked, each saw ACTIVE and recorded its own change.
    admin = await create_superadmin_user(client, settings)
    for _ in range(3):
        org = await create_org(client)
        url = f"{API}/admin/organizations/{org.id}"
        responses = await asyncio.gather(
            *(
                client.patch(url, json={"is_suspended": True}, headers=admin.headers)
                for _ in range(5)
            )
        )
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
        log = await client.get(
            f"{API}/admin/audit-log", params={"organization_id": org.id}, headers=admin.headers
        )
        updates = [e for e in log.json()["data"] if e["action"] == "organization.update"]
        assert len(updates) == 1, [e["details"] for e in updates]

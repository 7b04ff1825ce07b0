"""Review C: superadmin routes — a value the schema accepts must be storable, and a retried
(concurrent) admin write must neither 500 nor record one change several times."""

from __future__ import annotations

import asyncio

import httpx

from orgbill.config import Settings
from tests.fixtures.factories import API, assert_error, create_org, create_superadmin_user


async def test_admin_org_type_of_any_accepted_length_is_stored_not_a_500(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # AdminOrganizationUpdate.org_type accepts up to 64 characters (`Label`), but the
    # organization.org_type column is VARCHAR(32): PostgreSQL refuses the UPDATE -> 500.
    admin = await create_superadmin_user(client, settings)
    org = await create_org(client)
    org_type = "partner-reseller-" + "x" * 23  # 40 characters: valid per the schema
    response = await client.patch(
        f"{API}/admin/organizations/{org.id}", json={"org_type": org_type}, headers=admin.headers
    )
    # Either stored and returned as sent, or refused as a validation error: never a 5xx.
    if response.status_code == 422:
        assert_error(response, 422, "validation_error")
        return
    assert response.status_code == 200, response.text
    assert response.json()["org_type"] == org_type
    read = await client.get(f"{API}/organizations/{org.id}", headers=org.owner.headers)
    assert read.json()["organization"]["org_type"] == org_type


async def test_concurrent_first_enterprise_contract_puts_never_answer_500(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # PUT is idempotent: the same contract sent twice at once (a retry after a timeout, a
    # double click) must set it once and answer 200 to both. put_contract reads "no
    # contract", then inserts; the loser hits uq_enterprise_contract_organization_id -> 500.
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
    # SUSPENDED). The service reads the org unlocked, so on PostgreSQL every request sees
    # ACTIVE and records (and announces organization.suspended for) its own "change".
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

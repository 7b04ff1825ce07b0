"""Superadmin: impersonation (token's org wins), suspension, flags, audit log."""

from __future__ import annotations

import httpx

from orgbill.config import Settings
from tests.fixtures.factories import (
    API,
    assert_error,
    create_org,
    create_superadmin_user,
    register_user,
)


async def test_admin_routes_need_a_superadmin(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    for headers in (org.owner.headers, org.key_headers):
        assert_error(await client.get(f"{API}/admin/audit-log", headers=headers), 403, "forbidden")
        response = await client.post(
            f"{API}/admin/impersonate", json={"org_id": org.id}, headers=headers
        )
        assert_error(response, 403, "forbidden")


async def test_impersonation_token_acts_on_its_own_org_not_the_urls(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = await create_superadmin_user(client, settings)
    target = await create_org(client)
    other = await create_org(client)
    response = await client.post(
        f"{API}/admin/impersonate", json={"org_id": target.id}, headers=admin.headers
    )
    assert response.status_code == 200
    imp = {"Authorization": f"Bearer {response.json()['access_token']}"}
    profile = await client.get(f"{API}/organizations/profile/{other.id}", headers=imp)
    assert profile.status_code == 200 and profile.json()["id"] == target.id
    current = await client.get(f"{API}/organization", headers=imp)
    assert current.json()["id"] == target.id
    # an impersonation token is not an admin credential
    assert_error(await client.get(f"{API}/admin/audit-log", headers=imp), 403, "forbidden")
    log = await client.get(
        f"{API}/admin/audit-log", params={"organization_id": target.id}, headers=admin.headers
    )
    entries = log.json()["data"]
    assert entries[0]["action"] == "organization.impersonate"
    assert entries[0]["actor_user_id"] == admin.id
    assert entries[0]["request_id"] == response.headers["x-request-id"]


async def test_impersonating_an_unknown_org_is_404(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = await create_superadmin_user(client, settings)
    response = await client.post(
        f"{API}/admin/impersonate",
        json={"org_id": "00000000-0000-4000-8000-000000000000"},
        headers=admin.headers,
    )
    assert_error(response, 404, "not_found")


async def test_suspended_org_is_refused_except_reads_of_profile_and_plan(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = await create_superadmin_user(client, settings)
    org = await create_org(client)
    url = f"{API}/admin/organizations/{org.id}"
    suspended = await client.patch(url, json={"is_suspended": True}, headers=admin.headers)
    assert suspended.status_code == 200
    assert suspended.json()["status"] == "SUSPENDED" and suspended.json()["is_suspended"]
    key = org.key_headers
    assert (
        await client.get(f"{API}/organizations/profile/{org.id}", headers=key)
    ).status_code == 200
    assert (await client.get(f"{API}/organizations/{org.id}", headers=key)).status_code == 200
    assert (await client.get(f"{API}/organization", headers=key)).status_code == 200
    assert_error(
        await client.get(f"{API}/organizations/{org.id}/members", headers=key), 403, "org_suspended"
    )
    assert_error(
        await client.patch(f"{API}/organizations/{org.id}", json={"name": "x"}, headers=key),
        403,
        "org_suspended",
    )
    assert_error(
        await client.post(f"{API}/organization/regenerate-key", headers=key), 403, "org_suspended"
    )
    restored = await client.patch(url, json={"status": "ACTIVE"}, headers=admin.headers)
    assert restored.json()["is_suspended"] is False
    assert (
        await client.get(f"{API}/organizations/{org.id}/members", headers=key)
    ).status_code == 200


async def test_flags_and_rate_limit_override_are_audited(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = await create_superadmin_user(client, settings)
    org = await create_org(client)
    body = {
        "kyc_level": 2,
        "placement_group": "dedicated",
        "org_type": "partner",
        "rate_limit": 42,
        "entitlements": ["beta_feature"],
    }
    response = await client.patch(
        f"{API}/admin/organizations/{org.id}", json=body, headers=admin.headers
    )
    assert response.status_code == 200
    updated = response.json()
    assert updated["kyc_level"] == 2 and updated["rate_limit"] == 42
    assert updated["entitlements"] == ["beta_feature"]
    profile = (
        await client.get(f"{API}/organizations/profile/{org.id}", headers=org.key_headers)
    ).json()
    assert profile["api_rate_limit"] == 42
    assert "beta_feature" in profile["limits"]["features"]
    log = await client.get(
        f"{API}/admin/audit-log", params={"organization_id": org.id}, headers=admin.headers
    )
    entry = log.json()["data"][0]
    assert entry["action"] == "organization.update"
    assert entry["details"]["changes"]["kyc_level"] == {"from": 0, "to": 2}
    assert entry["request_id"] == response.headers["x-request-id"]
    for bad_change in (
        {"kyc_level": -1},
        {"kyc_level": "3"},
        {"rate_limit": True},  # not 1 request a second
        {"rate_limit": 7.0},
        {"is_suspended": "yes"},
        {"is_suspended": 1},
    ):
        bad = await client.patch(
            f"{API}/admin/organizations/{org.id}", json=bad_change, headers=admin.headers
        )
        assert_error(bad, 422, "validation_error")
    unchanged = await client.get(f"{API}/organizations/profile/{org.id}", headers=org.key_headers)
    assert unchanged.json()["api_rate_limit"] == 42
    conflicting = await client.patch(
        f"{API}/admin/organizations/{org.id}",
        json={"status": "ACTIVE", "is_suspended": True},
        headers=admin.headers,
    )
    assert_error(conflicting, 400, "bad_request")


async def test_superadmin_lists_all_orgs_and_reads_without_membership(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = await create_superadmin_user(client, settings)
    org = await create_org(client)
    assert (
        await client.get(f"{API}/organizations/{org.id}", headers=admin.headers)
    ).status_code == 200
    write = await client.patch(
        f"{API}/organizations/{org.id}", json={"name": "x"}, headers=admin.headers
    )
    assert_error(write, 403, "forbidden")
    user = await register_user(client)
    assert_error(
        await client.get(f"{API}/organizations/{org.id}", headers=user.headers), 403, "forbidden"
    )


async def test_an_impersonation_token_lists_and_creates_no_other_organization(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """The token acts for its organization alone: `GET /organizations` lists that one (the
    superadmin's own token lists every organization), and creating one is 403."""
    admin = await create_superadmin_user(client, settings)
    target = await create_org(client)
    await create_org(client)
    response = await client.post(
        f"{API}/admin/impersonate", json={"org_id": target.id}, headers=admin.headers
    )
    imp = {"Authorization": f"Bearer {response.json()['access_token']}"}
    listed = await client.get(f"{API}/organizations", headers=imp)
    assert listed.status_code == 200, listed.text
    assert [org["id"] for org in listed.json()["data"]] == [target.id]
    everything = await client.get(f"{API}/organizations", headers=admin.headers)
    assert len(everything.json()["data"]) >= 2
    created = await client.post(f"{API}/organizations", json={"name": "Side door"}, headers=imp)
    assert_error(created, 403, "forbidden")

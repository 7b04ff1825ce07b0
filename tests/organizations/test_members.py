"""Roles, the permission matrix, max_members and the last-owner rule."""

from __future__ import annotations

import httpx
import pytest

from tests.fixtures.factories import API, add_member, assert_error, create_org, register_user


async def test_permission_matrix(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    users = {}
    for role in ("admin", "billing"):
        users[role] = await register_user(client, role)
        assert (await add_member(client, org, users[role], role)).status_code == 201
    # the free plan allows 3 members: owner, admin, billing; "member" is covered below
    base = f"{API}/organizations/{org.id}"
    for role, user in users.items():
        reads = await client.get(f"{base}/members", headers=user.headers)
        assert reads.status_code == 200, role
        keys = await client.get(f"{base}/api-keys", headers=user.headers)
        patch = await client.patch(base, json={"name": f"by {role}"}, headers=user.headers)
        if role == "admin":
            assert keys.status_code == 200 and patch.status_code == 200
        elif role == "billing":
            assert_error(keys, 403, "forbidden")
            assert_error(patch, 403, "forbidden")


async def test_member_role_cannot_manage(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    member = await register_user(client, "member")
    assert (await add_member(client, org, member, "member")).status_code == 201
    base = f"{API}/organizations/{org.id}"
    assert (await client.get(base, headers=member.headers)).status_code == 200
    assert_error(
        await client.patch(base, json={"name": "x"}, headers=member.headers), 403, "forbidden"
    )
    assert_error(await client.get(f"{base}/api-keys", headers=member.headers), 403, "forbidden")
    newcomer = await register_user(client, "newcomer")
    attempt = await client.post(
        f"{base}/members", json={"user_id": newcomer.id}, headers=member.headers
    )
    assert_error(attempt, 403, "forbidden")


async def test_adding_past_max_members_is_limit_exceeded(client: httpx.AsyncClient) -> None:
    org = await create_org(client)  # free plan: max_members = 3
    for _ in range(2):
        user = await register_user(client)
        assert (await add_member(client, org, user, "member")).status_code == 201
    extra = await register_user(client)
    error = assert_error(await add_member(client, org, extra, "member"), 403, "limit_exceeded")
    assert "3" in error["message"]


async def test_duplicate_and_unknown_members(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    user = await register_user(client)
    assert (await add_member(client, org, user, "member")).status_code == 201
    assert_error(await add_member(client, org, user, "admin"), 409, "conflict")
    unknown = await client.post(
        f"{API}/organizations/{org.id}/members",
        json={"email": "nobody-here@example.com"},
        headers=org.owner.headers,
    )
    assert_error(unknown, 404, "not_found")
    both = await client.post(
        f"{API}/organizations/{org.id}/members",
        json={"email": user.email, "user_id": user.id},
        headers=org.owner.headers,
    )
    assert_error(both, 422, "validation_error")


async def test_last_owner_cannot_be_removed_or_demoted(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    url = f"{API}/organizations/{org.id}/members/{org.owner.id}"
    assert_error(await client.delete(url, headers=org.owner.headers), 409, "conflict")
    demote = await client.patch(url, json={"role": "admin"}, headers=org.owner.headers)
    assert_error(demote, 409, "conflict")
    second = await register_user(client, "owner2")
    assert (await add_member(client, org, second, "owner")).status_code == 201
    assert (
        await client.patch(url, json={"role": "admin"}, headers=org.owner.headers)
    ).status_code == 200
    second_url = f"{API}/organizations/{org.id}/members/{second.id}"
    assert_error(await client.delete(second_url, headers=second.headers), 409, "conflict")


@pytest.mark.parametrize("target_role", ["owner"])
async def test_admin_cannot_grant_or_touch_owner(
    client: httpx.AsyncClient, target_role: str
) -> None:
    org = await create_org(client)
    admin = await register_user(client, "admin")
    assert (await add_member(client, org, admin, "admin")).status_code == 201
    newcomer = await register_user(client)
    grant = await client.post(
        f"{API}/organizations/{org.id}/members",
        json={"user_id": newcomer.id, "role": target_role},
        headers=admin.headers,
    )
    assert_error(grant, 403, "forbidden")
    remove_owner = await client.delete(
        f"{API}/organizations/{org.id}/members/{org.owner.id}", headers=admin.headers
    )
    assert_error(remove_owner, 403, "forbidden")
    promote_self = await client.patch(
        f"{API}/organizations/{org.id}/members/{admin.id}",
        json={"role": "owner"},
        headers=admin.headers,
    )
    assert_error(promote_self, 403, "forbidden")


async def test_members_are_listed_and_removed(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    user = await register_user(client)
    assert (await add_member(client, org, user, "billing")).status_code == 201
    listed = await client.get(f"{API}/organizations/{org.id}/members", headers=org.owner.headers)
    roles = {m["user_id"]: m["role"] for m in listed.json()["data"]}
    assert roles == {org.owner.id: "owner", user.id: "billing"}
    url = f"{API}/organizations/{org.id}/members/{user.id}"
    assert (await client.delete(url, headers=org.owner.headers)).status_code == 204
    assert_error(await client.delete(url, headers=org.owner.headers), 404, "not_found")
    assert_error(
        await client.get(f"{API}/organizations/{org.id}", headers=user.headers), 403, "forbidden"
    )

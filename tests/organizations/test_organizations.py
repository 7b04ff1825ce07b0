"""Organization create/list/read/profile/patch/delete through the API."""

from __future__ import annotations

import httpx

from tests.fixtures.factories import API, assert_error, create_org, register_user

ORG_FIELDS = {
    "id",
    "name",
    "slug",
    "website",
    "image_url",
    "status",
    "region_id",
    "org_type",
    "kyc_level",
    "placement_group",
    "is_suspended",
    "is_deleted",
    "is_stripe_overdue",
    "rate_limit",
    "entitlements",
    "preferences",
    "partner_configuration",
    "registerable",
    "api_key_prefix",
    "created_at",
    "updated_at",
}
PROFILE_FIELDS = {
    "id",
    "name",
    "slug",
    "website",
    "status",
    "total_credits",
    "region_id",
    "plan_name",
    "sub_status",
    "period_end",
    "max_concurrency",
    "max_members",
    "max_agents",
    "max_credits",
    "api_rate_limit",
    "can_record_calls",
    "can_use_api",
    "extra_credit_price",
    "limits",
    "plan_source",
}


async def test_create_org_makes_caller_owner_and_slugs_are_unique(
    client: httpx.AsyncClient,
) -> None:
    user = await register_user(client)
    slug = f"acme-{user.id[:8]}"
    body = {"name": "Acme Inc", "slug": slug, "website": "https://acme.example"}
    created = await client.post(f"{API}/organizations", json=body, headers=user.headers)
    assert created.status_code == 201
    org = created.json()
    assert set(org) >= ORG_FIELDS
    assert org["slug"] == slug and org["status"] == "ACTIVE" and org["plan"] == "free"
    assert org["created_at"].endswith("Z")
    again = await client.post(f"{API}/organizations", json=body, headers=user.headers)
    assert_error(again, 409, "conflict")
    derived = await client.post(
        f"{API}/organizations", json={"name": "Acme Inc"}, headers=user.headers
    )
    assert derived.status_code == 201 and derived.json()["slug"].startswith("acme-inc")
    listed = await client.get(f"{API}/organizations", headers=user.headers)
    ids = {o["id"] for o in listed.json()["data"]}
    assert org["id"] in ids and derived.json()["id"] in ids


async def test_bad_slug_and_website_are_validation_errors(client: httpx.AsyncClient) -> None:
    user = await register_user(client)
    for body in (
        {"name": "x", "slug": "Bad Slug!"},
        {"name": "x", "website": "not a url"},
        {"name": ""},
        {"name": "x", "unexpected": 1},
    ):
        response = await client.post(f"{API}/organizations", json=body, headers=user.headers)
        assert_error(response, 422, "validation_error")


async def test_api_key_reads_its_org_without_plaintext_key(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    response = await client.get(f"{API}/organization", headers=org.key_headers)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == org.id and set(body) >= ORG_FIELDS
    assert org.api_key[:11] == body["api_key_prefix"]
    assert org.api_key not in response.text


async def test_user_needs_org_header_for_current_org_routes(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    assert_error(
        await client.get(f"{API}/organization", headers=org.owner.headers), 400, "bad_request"
    )
    bad = {**org.owner.headers, "X-Organization-Id": "nope"}
    assert_error(await client.get(f"{API}/organization", headers=bad), 400, "bad_request")
    good = {**org.owner.headers, "X-Organization-Id": org.id}
    assert (await client.get(f"{API}/organization", headers=good)).json()["id"] == org.id


async def test_profile_has_every_seed_field_from_the_free_plan(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    response = await client.get(f"{API}/organizations/profile/{org.id}", headers=org.key_headers)
    assert response.status_code == 200
    profile = response.json()
    assert set(profile) >= PROFILE_FIELDS
    assert profile["plan_source"] == "free" and profile["plan_name"] == "Free"
    assert profile["max_members"] == profile["limits"]["max_members"]
    assert isinstance(profile["total_credits"], int | float)
    assert isinstance(profile["extra_credit_price"], int | float)


async def test_composite_read_has_org_plan_and_null_subscription(
    client: httpx.AsyncClient,
) -> None:
    org = await create_org(client)
    response = await client.get(f"{API}/organizations/{org.id}", headers=org.owner.headers)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"organization", "plan", "subscription"}
    assert body["organization"]["id"] == org.id and body["subscription"] is None
    assert body["plan"]["code"] == "free" and body["plan"]["plan_source"] == "free"
    assert body["plan"]["user_count"] == body["plan"]["limits"]["max_members"]


async def test_patch_updates_fields_and_rejects_bad_input(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    url = f"{API}/organizations/{org.id}"
    body = {
        "name": "New Name",
        "website": "https://new.example",
        "image_url": "https://cdn.example/logo.png",
        "preferences": {"use_custom_url": True},
        "partner_configuration": {"COMPANY_NAME": "New"},
    }
    response = await client.patch(url, json=body, headers=org.owner.headers)
    assert response.status_code == 200
    updated = response.json()
    assert updated["name"] == "New Name" and updated["preferences"] == {"use_custom_url": True}
    assert updated["partner_configuration"] == {"COMPANY_NAME": "New"}
    assert_error(
        await client.patch(url, json={"name": None}, headers=org.owner.headers), 400, "bad_request"
    )
    assert_error(
        await client.patch(url, json={"status": "DELETED"}, headers=org.owner.headers),
        422,
        "validation_error",
    )


async def test_soft_delete_needs_owner_and_revokes_every_key(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    admin = await register_user(client, "admin")
    await client.post(
        f"{API}/organizations/{org.id}/members",
        json={"user_id": admin.id, "role": "admin"},
        headers=org.owner.headers,
    )
    url = f"{API}/organizations/{org.id}"
    assert_error(await client.delete(url, headers=admin.headers), 403, "forbidden")
    assert_error(await client.delete(url, headers=org.key_headers), 403, "forbidden")
    assert (await client.delete(url, headers=org.owner.headers)).status_code == 204
    assert_error(await client.get(url, headers=org.owner.headers), 404, "not_found")
    assert_error(
        await client.get(f"{API}/organization", headers=org.key_headers), 401, "unauthorized"
    )
    listed = await client.get(f"{API}/organizations", headers=org.owner.headers)
    assert org.id not in {o["id"] for o in listed.json()["data"]}

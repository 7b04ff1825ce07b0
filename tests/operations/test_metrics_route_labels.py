"""/metrics names the route template of HEAD requests and of the docs assets mount."""

from __future__ import annotations

import httpx

from orgbill.operations.router import DOCS_ASSETS_PATH
from tests.fixtures.factories import API, create_org
from tests.operations.test_logs_and_metrics import _value

REQUESTS = "orgbill_http_requests_total"


async def test_head_and_docs_assets_are_counted_under_their_route_template(
    client: httpx.AsyncClient,
) -> None:
    # CONTRACT, Operations: "`GET /metrics` (... requests by route template, method and
    # status ...)"; the docs' assets are "served by orgbill itself".
    org = await create_org(client)
    profile = "/api/v1/organizations/profile/{org_id}"
    assets = f"{DOCS_ASSETS_PATH}/{{path}}"
    before = (await client.get("/metrics")).text
    for _ in range(2):
        head = await client.head(f"{API}/organizations/profile/{org.id}", headers=org.key_headers)
        assert head.status_code == 200 and head.content == b""
    asset = await client.get(f"{DOCS_ASSETS_PATH}/swagger-ui.css")
    assert asset.status_code == 200
    after = (await client.get("/metrics")).text

    def delta(**labels: str) -> float:
        return _value(after, REQUESTS, **labels) - _value(before, REQUESTS, **labels)

    # Before: both were counted as route="unmatched".
    assert delta(method="HEAD", route=profile, status="200") == 2
    assert delta(method="GET", route=profile) == 0  # HEAD is named HEAD, not GET
    assert delta(method="GET", route=assets, status="200") == 1
    assert delta(route="unmatched") == 0

"""/metrics names the route template of HEAD requests and of the docs assets mount."""

from __future__ import annotations

import httpx

from tests.fixtures.factories import API, create_org
from tests.operations.test_logs_and_metrics import _value


async def test_head_requests_are_counted_under_their_route_template(
    client: httpx.AsyncClient,
) -> None:
    # CONTRACT.md, Operations: "`GET /metrics` (Prometheus text format: requests by route
    # template, method and status with latency histograms, …)". README: HEAD is answered
    # wherever GET is, and "the access log and metrics say HEAD" (the method, not the route).
    org = await create_org(client)
    route = "/api/v1/organizations/profile/{org_id}"
    before = (await client.get("/metrics")).text
    for _ in range(2):
        head = await client.head(f"{API}/organizations/profile/{org.id}", headers=org.key_headers)
        assert head.status_code == 200
    after = (await client.get("/metrics")).text
    counted = _value(after, "orgbill_http_requests_total", method="HEAD", route=route, status="200")
    counted -= _value(
        before, "orgbill_http_requests_total", method="HEAD", route=route, status="200"
    )
    assert counted == 2


async def test_served_docs_assets_are_not_counted_as_unmatched_routes(
    client: httpx.AsyncClient,
) -> None:
    # CONTRACT.md, Operations: "requests by route template, method and status"; `/docs` assets
    # are "served by orgbill itself": a 200 answer matched a route (the assets mount).
    labels = {"method": "GET", "route": "unmatched", "status": "200"}
    before = _value((await client.get("/metrics")).text, "orgbill_http_requests_total", **labels)
    asset = await client.get("/docs/assets/swagger-ui.css")
    assert asset.status_code == 200
    after = _value((await client.get("/metrics")).text, "orgbill_http_requests_total", **labels)
    assert after - before == 0

"""JSON logs (one format, ms UTC timestamps, request facts, probes quiet) and /metrics."""

from __future__ import annotations

import logging
import re
import time
import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families

from orgbill.kit.logging import JsonFormatter
from tests.fixtures.factories import API, create_org
from tests.fixtures.logs import captured_logs
from tests.fixtures.stripe import deliver, event

TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def test_log_timestamps_are_utc_iso8601_with_milliseconds() -> None:
    record = logging.makeLogRecord({"msg": "x", "created": 1764600000.5})
    import json

    line = json.loads(JsonFormatter().format(record))
    assert line["ts"] == "2025-12-01T14:40:00.500Z"
    assert TS.match(line["ts"])


async def test_access_line_carries_request_org_client_and_timing(
    client: httpx.AsyncClient,
) -> None:
    org = await create_org(client)
    with captured_logs() as lines:
        response = await client.get(
            f"{API}/organizations/profile/{org.id}",
            headers={**org.key_headers, "User-Agent": "probe-test/1.0"},
        )
    assert response.status_code == 200
    access = [line for line in lines if line["logger"] == "orgbill.access"]
    assert len(access) == 1
    line = access[0]
    assert TS.match(line["ts"])
    assert line["requestId"] == response.headers["x-request-id"]
    assert line["organizationId"] == str(org.id)
    assert line["clientIp"] == "127.0.0.1"
    assert line["userAgent"] == "probe-test/1.0"
    assert line["status"] == 200 and line["method"] == "GET"
    assert line["route"] == "/api/v1/organizations/profile/{org_id}"
    assert isinstance(line["durationMs"], float | int)


async def test_probes_are_not_access_logged_unless_asked(client: httpx.AsyncClient) -> None:
    with captured_logs() as lines:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await client.get(path)).status_code == 200
        await client.get(f"{API}/plans")
    paths = [line["path"] for line in lines if line["logger"] == "orgbill.access"]
    assert paths == [f"{API}/plans"]


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def _value(text: str, name: str, **labels: str) -> float:
    return sum(v for found, v in _samples(text, name) if labels.items() <= found.items())


async def test_metrics_count_requests_by_route_template_method_and_status(
    client: httpx.AsyncClient,
) -> None:
    org = await create_org(client)
    route = "/api/v1/organizations/profile/{org_id}"
    before = (await client.get("/metrics")).text
    for _ in range(3):
        await client.get(f"{API}/organizations/profile/{org.id}", headers=org.key_headers)
    await client.get(f"{API}/organizations/profile/{uuid.uuid4()}", headers=org.key_headers)
    await client.get(f"/no-such-{uuid.uuid4()}")
    scrape = await client.get("/metrics")
    assert scrape.headers["content-type"].startswith("text/plain")
    after = scrape.text

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("orgbill_http_requests_total", method="GET", route=route, status="200") == 3
    assert delta("orgbill_http_requests_total", method="GET", route=route, status="403") == 1
    assert delta("orgbill_http_requests_total", route="unmatched", status="404") == 1
    assert delta("orgbill_http_request_duration_seconds_count", route=route, status="200") == 3
    # A scanner's random paths share one series.
    assert not any("no-such" in line for line in after.splitlines())
    for name in (
        "orgbill_rate_limit_refusals_total",
        "orgbill_stripe_events_total",
        "orgbill_usage_events_accepted_total",
        "orgbill_webhook_deliveries_total",
        "orgbill_db_pool_connections_in_use",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in after, name


async def test_metrics_count_usage_events_accepted(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    before = _value((await client.get("/metrics")).text, "orgbill_usage_events_accepted_total")
    response = await client.post(
        f"{API}/usage/events",
        json={"events": [{"metric": "turns", "quantity": 2}, {"metric": "turns", "quantity": 1}]},
        headers=org.key_headers,
    )
    assert response.status_code == 200, response.text
    after = _value((await client.get("/metrics")).text, "orgbill_usage_events_accepted_total")
    assert after - before == response.json()["accepted"] == 2


async def test_metrics_count_stripe_events_by_type_and_status(client: httpx.AsyncClient) -> None:
    kind = "orgbill.metrics_probe"  # an unknown type: stored, answered 200, ignored
    before = _value((await client.get("/metrics")).text, "orgbill_stripe_events_total", type=kind)
    payload = event(kind, {"id": "obj_1", "object": "thing"}, int(time.time()), "2024-06-20")
    assert (await deliver(client, payload)).status_code == 200
    after = (await client.get("/metrics")).text
    assert _value(after, "orgbill_stripe_events_total", type=kind) - before == 1
    assert _value(after, "orgbill_stripe_events_total", type=kind, status="ignored") >= 1

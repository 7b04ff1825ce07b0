"""A delivery's retry window is its own: waiting behind an earlier delivery of its queue must
not use it up (CONTRACT.md, "Events to your product": a non-2xx is retried with backoff for at
least 24 hours — here the fast dispatcher's 2 s window — before the delivery is `failed`)."""

from __future__ import annotations

import asyncio
import time

import httpx

from orgbill.config import Settings
from tests.fixtures.factories import API
from tests.fixtures.webhook_receiver import Receiver
from tests.webhooks_out.helpers import deliveries, org_with_endpoint


async def _all_settled(
    client: httpx.AsyncClient, admin: object, endpoint_id: str, count: int
) -> list[dict[str, object]]:
    deadline = time.monotonic() + 20
    while True:
        log = (await deliveries(client, admin, endpoint_id))["data"]  # type: ignore[arg-type]
        if len(log) >= count and all(d["status"] != "pending" for d in log):
            return log
        assert time.monotonic() < deadline, log
        await asyncio.sleep(0.1)


async def test_a_delivery_queued_behind_a_failing_one_is_retried_for_its_own_window(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    admin, org, endpoint, path = await org_with_endpoint(
        client, settings, receiver, ["organization.updated"]
    )
    receiver.always_fail(path, 503)
    for name in ("First", "Second"):
        response = await client.patch(
            f"{API}/organizations/{org.id}", json={"name": name}, headers=org.owner.headers
        )
        assert response.status_code == 200
    log = await _all_settled(client, admin, endpoint["id"], 2)
    newest_first = sorted(log, key=lambda d: d["created_at"], reverse=True)  # type: ignore[arg-type, return-value]
    second, first = newest_first[0], newest_first[1]
    assert first["status"] == "failed" and first["attempts"] >= 2, first  # type: ignore[operator]
    # The second update waited (in order) while the first was retried for the whole window;
    # when its own turn came it must be retried too, not failed on its very first attempt.
    assert second["status"] == "failed"
    assert second["attempts"] >= 2, (
        f"the second delivery was marked failed after {second['attempts']} attempt(s): its "
        "retry window was spent waiting behind the first"
    )

"""URLs that would be checked as one origin and used as another are refused, on every\nfield of the URL type (an outbound endpoint, an organization's website)."""

from __future__ import annotations

import httpx
import pytest

from orgbill.config import Settings
from tests.fixtures.factories import API, assert_error, create_org, create_superadmin_user


@pytest.mark.parametrize(
    "url",
    [
        "http:/hooks.example.com/orgbill",  # no host: the sender (httpx) sees host ''
        "https://hooks.example.com\\@attacker.example/",  # validated as hooks.example.com,
        # sent by httpx to attacker.example
    ],
)
async def test_an_endpoint_url_the_sender_would_resolve_elsewhere_is_422(
    client: httpx.AsyncClient, settings: Settings, url: str
) -> None:
    # CONTRACT "Conventions": "What you send is what you get back: a stored string ... is
    # returned exactly as sent"; README "URLs ... must be absolute http(s) URLs": the URL is
    # stored as sent but validated as a WHATWG-repaired form, so what is checked is not what
    # is delivered to. RFC 9110 4.2.1: an "http" URI with an empty host MUST be rejected.
    admin = await create_superadmin_user(client, settings)
    response = await client.post(
        f"{API}/admin/webhook-endpoints", json={"url": url, "events": ["*"]}, headers=admin.headers
    )
    # Observed: 201, the endpoint stored with this URL.
    assert_error(response, 422, "validation_error")
    assert httpx.URL(url).host in ("", "attacker.example")  # what delivery would use


async def _set_website(client: httpx.AsyncClient, url: str) -> httpx.Response:
    org = await create_org(client)
    return await client.patch(
        f"{API}/organizations/{org.id}", json={"website": url}, headers=org.key_headers
    )


@pytest.mark.parametrize(
    "url",
    [
        "http:/hooks.example.com/orgbill",
        "https://hooks.example.com\\@attacker.example/",
        "https://example.com\\evil",
    ],
)
async def test_an_organization_website_that_names_two_origins_is_422(
    client: httpx.AsyncClient, url: str
) -> None:
    assert_error(await _set_website(client, url), 422, "validation_error")


@pytest.mark.parametrize(
    "url",
    [
        "https://HOOKS.Example.com:8443/x?y=1#f",
        "https://bücher.example/p",
        "http://127.0.0.1:9/",
        "http://[::1]:8080/a",
        "https://user:pw@h.example/",
        "https://h.example:443/",
        # Link-local is refused only where orgbill's server calls the URL (webhook endpoints).
        "http://169.254.169.254/",
    ],
)
async def test_unambiguous_urls_are_kept_exactly_as_sent(
    client: httpx.AsyncClient, url: str
) -> None:
    response = await _set_website(client, url)
    assert response.status_code == 200, response.text
    assert response.json()["website"] == url

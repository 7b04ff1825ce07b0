"""The client address behind trusted proxies (contract: right-most X-Forwarded-For hop that is
not itself a trusted proxy) and the ORGBILL_TRUSTED_PROXIES setting."""

from __future__ import annotations

from ipaddress import ip_network

import pytest
from pydantic import Field, ValidationError

from orgbill.config import Settings
from orgbill.kit.client_ip import client_address

PROXIES = [ip_network("10.0.0.0/8"), ip_network("fd00::/8")]


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("203.0.113.5", ["198.51.100.1"], "203.0.113.5"),  # untrusted peer: header ignored
        ("10.0.0.1", [], "10.0.0.1"),  # a trusted peer without the header is the client
        ("10.0.0.1", ["198.51.100.1"], "198.51.100.1"),
        ("10.0.0.1", ["1.1.1.1, 198.51.100.1, 10.0.0.2"], "198.51.100.1"),  # right-most
        ("10.0.0.1", ["1.1.1.1", "198.51.100.1"], "198.51.100.1"),  # several headers
        ("10.0.0.1", ["10.0.0.3, 10.0.0.2"], "10.0.0.3"),  # all trusted: the left-most
        ("10.0.0.1", ["1.1.1.1, garbage"], "10.0.0.1"),  # unparseable: the last proxy
        ("fd00::1", ["2001:db8::7"], "2001:db8::7"),
    ],
)
def test_client_address(peer: str, forwarded_for: list[str], client: str) -> None:
    assert client_address(peer, forwarded_for, PROXIES) == client


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert client_address("10.0.0.1", ["198.51.100.1"], []) == "10.0.0.1"


def test_trusted_proxies_setting_is_comma_separated_cidrs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORGBILL_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1,fd00::/8")
    assert Settings().trusted_proxies == [
        ip_network("10.0.0.0/8"),
        ip_network("192.168.1.1/32"),
        ip_network("fd00::/8"),
    ]
    for bad in ("not-a-cidr", "10.0.0.1/8"):
        monkeypatch.setenv("ORGBILL_TRUSTED_PROXIES", bad)
        with pytest.raises(ValidationError, match="ORGBILL_TRUSTED_PROXIES"):
            Settings()


@pytest.mark.parametrize(
    "variable", ["public_rate_limit", "user_rate_limit", "rate_limit_burst_seconds"]
)
@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan", "1e-12", "1e7"])
def test_rate_settings_are_finite_and_bounded(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    # inf (and rates so small a bucket refills after year 9999) made every request charged to
    # the bucket a 500: refused with the settings instead.
    monkeypatch.setenv(f"ORGBILL_{variable.upper()}", value)
    with pytest.raises(ValidationError, match=variable):
        Settings()


def test_a_trusted_proxy_seen_as_an_ipv4_mapped_ipv6_peer_is_trusted() -> None:
    """Behind `--host ::` (dual stack) an IPv4 proxy's peer address is `::ffff:10.0.0.5`: it
    is read as 10.0.0.5, so ORGBILL_TRUSTED_PROXIES=10.0.0.0/8 trusts it (as an IPv6 address
    it is in no IPv4 network, and every client would be the proxy: one bucket for all)."""
    proxies = [ip_network("10.0.0.0/8")]
    assert client_address("::ffff:10.0.0.5", ["203.0.113.7"], proxies) == "203.0.113.7"


def test_no_number_setting_takes_infinity_or_nan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pattern behind the rate settings' `inf`: every float setting refuses `inf` and
    `nan` (a `gt=0` bound alone lets `inf` through, and it overflows where it is used)."""
    floats = [name for name, field in Settings.model_fields.items() if field.annotation is float]
    assert len(floats) >= 8, floats
    for name in floats:
        for value in ("inf", "nan"):
            monkeypatch.setenv(f"ORGBILL_{name.upper()}", value)
            with pytest.raises(ValidationError, match=name):
                Settings()
        monkeypatch.delenv(f"ORGBILL_{name.upper()}")


def test_a_float_setting_added_with_only_a_lower_bound_still_refuses_infinity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rule is the settings model's, not each field's bounds: a new `gt=0` float (which
    `inf` passes on its own) is refused too."""

    class WithNewSetting(Settings):
        new_delay_seconds: float = Field(default=1.0, gt=0)

    monkeypatch.setenv("ORGBILL_NEW_DELAY_SECONDS", "inf")
    with pytest.raises(ValidationError, match="new_delay_seconds"):
        WithNewSetting()

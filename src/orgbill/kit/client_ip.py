"""The client's address: the TCP peer, unless the peer is a trusted proxy; then the right-most
X-Forwarded-For hop that is not itself a trusted proxy. Forwarded and X-Real-IP are never
read, and nothing a client sends is believed unless a trusted proxy relayed it."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

Network = IPv4Network | IPv6Network


def unmapped(address: IPv4Address | IPv6Address) -> IPv4Address | IPv6Address:
    """An IPv4-mapped IPv6 address (`::ffff:10.0.0.5`, an IPv4 peer on a dual-stack listener)
    as the IPv4 address it carries, so IPv4 networks and ranges match it."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _parse(value: str) -> IPv4Address | IPv6Address | None:
    try:
        return unmapped(ip_address(value.strip()))
    except ValueError:
        return None


def _trusted(address: IPv4Address | IPv6Address, proxies: Sequence[Network]) -> bool:
    return any(address in network for network in proxies)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], proxies: Sequence[Network]
) -> str:
    """`forwarded_for`: every X-Forwarded-For header value, in the order received."""
    if peer is None:
        return "unknown"
    if not proxies:
        return peer  # nothing to believe: no need to parse it (every request comes here)
    current = _parse(peer)
    if current is None or not _trusted(current, proxies):
        return peer
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            # Garbage where an address should be: the last proxy we believe is the client.
            break
        current = address
        if not _trusted(address, proxies):
            break
    return str(current)

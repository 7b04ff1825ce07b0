"""What each role may do in an organization: the one role → permission table.

Routers name the permission a route needs (`Perm.MEMBERS_WRITE`); adding a role, or changing
what a role may do, touches this file only."""

from __future__ import annotations

from enum import StrEnum

from orgbill.models import Role


class Perm(StrEnum):
    ORG_READ = "org:read"
    ORG_WRITE = "org:write"  # settings: name, website, preferences…
    ORG_DELETE = "org:delete"
    MEMBERS_READ = "members:read"
    MEMBERS_WRITE = "members:write"
    OWNERS_WRITE = "owners:write"  # grant, change or remove the owner role
    API_KEYS_WRITE = "api_keys:write"  # list, create, revoke, regenerate (lists show prefixes)
    BILLING_READ = "billing:read"
    BILLING_WRITE = "billing:write"  # checkout, portal
    USAGE_READ = "usage:read"
    USAGE_WRITE = "usage:write"
    CREDITS_READ = "credits:read"
    CREDITS_SPEND = "credits:spend"


_READ = frozenset(
    {Perm.ORG_READ, Perm.MEMBERS_READ, Perm.BILLING_READ, Perm.USAGE_READ, Perm.CREDITS_READ}
)
_MANAGE = _READ | {
    Perm.ORG_WRITE,
    Perm.MEMBERS_WRITE,
    Perm.API_KEYS_WRITE,
    Perm.BILLING_WRITE,
    Perm.USAGE_WRITE,
    Perm.CREDITS_SPEND,
}

ROLE_PERMISSIONS: dict[Role, frozenset[Perm]] = {
    Role.OWNER: frozenset(_MANAGE | {Perm.ORG_DELETE, Perm.OWNERS_WRITE}),
    Role.ADMIN: frozenset(_MANAGE),
    Role.BILLING: _READ | {Perm.BILLING_WRITE},
    Role.MEMBER: _READ,
}


def allows(role: Role, permission: Perm) -> bool:
    return permission in ROLE_PERMISSIONS.get(role, frozenset())

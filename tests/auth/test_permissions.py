"""The role → permission table says what the contract says ("Who is calling")."""

from __future__ import annotations

from orgbill.auth.permissions import ROLE_PERMISSIONS, Perm, allows
from orgbill.models import Role

READS = {Perm.ORG_READ, Perm.MEMBERS_READ, Perm.BILLING_READ, Perm.USAGE_READ, Perm.CREDITS_READ}


def test_reads_need_any_role() -> None:
    for role in Role:
        assert ROLE_PERMISSIONS[role] >= READS, role


def test_members_keys_and_settings_need_owner_or_admin() -> None:
    for permission in (Perm.MEMBERS_WRITE, Perm.API_KEYS_WRITE, Perm.ORG_WRITE):
        assert {r for r in Role if allows(r, permission)} == {Role.OWNER, Role.ADMIN}


def test_billing_actions_need_owner_admin_or_billing() -> None:
    allowed = {r for r in Role if allows(r, Perm.BILLING_WRITE)}
    assert allowed == {Role.OWNER, Role.ADMIN, Role.BILLING}


def test_deleting_the_org_and_granting_owner_need_owner() -> None:
    for permission in (Perm.ORG_DELETE, Perm.OWNERS_WRITE):
        assert {r for r in Role if allows(r, permission)} == {Role.OWNER}


def test_every_role_is_in_the_table() -> None:
    assert set(ROLE_PERMISSIONS) == set(Role)

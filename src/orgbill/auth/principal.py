"""Who is calling: an organization's API key, or a user (possibly an impersonating superadmin)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from orgbill.entitlements.repository import PlanInputs
from orgbill.entitlements.resolver import EffectivePlan
from orgbill.models import Organization, Role, User


@dataclass(frozen=True, slots=True)
class ApiKeyRef:
    """What a request needs of its API key (read as plain columns on the hot path)."""

    id: uuid.UUID
    organization_id: uuid.UUID
    name: str
    prefix: str
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(slots=True)
class ApiKeyPrincipal:
    key: ApiKeyRef
    organization: Organization
    plan_inputs: PlanInputs


@dataclass(slots=True)
class UserPrincipal:
    user: User
    impersonated_org_id: uuid.UUID | None = None


Principal = ApiKeyPrincipal | UserPrincipal


@dataclass(slots=True)
class OrgAccess:
    """The organization a request acts on, who acts, and with which role."""

    organization: Organization
    principal: Principal
    role: Role
    # Fetched in the same round trip as the caller's identity; None means "load on demand".
    plan_inputs: PlanInputs | None = None
    # Memo of entitlements.service.plan_for_access for this request.
    effective_plan: EffectivePlan | None = None

    @property
    def actor_user_id(self) -> uuid.UUID | None:
        return self.principal.user.id if isinstance(self.principal, UserPrincipal) else None

    @property
    def api_key(self) -> ApiKeyRef | None:
        return self.principal.key if isinstance(self.principal, ApiKeyPrincipal) else None


ANY_ROLE = frozenset(Role)
MANAGERS = frozenset({Role.OWNER, Role.ADMIN})
BILLING_ROLES = frozenset({Role.OWNER, Role.ADMIN, Role.BILLING})
OWNERS = frozenset({Role.OWNER})

# An organization's own API key acts with admin rights: everything but deleting the org.
API_KEY_ROLE = Role.ADMIN
# A superadmin reading an org they do not belong to, without impersonating it.
SUPERADMIN_READ_ROLE = Role.MEMBER

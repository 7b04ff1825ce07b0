"""Who is calling: an organization's API key, or a user (possibly an impersonating superadmin),
and the per-request `Caller` the caller middleware resolves once for the rate limit and the
routes alike."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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


@dataclass(frozen=True, slots=True)
class CallerRider:
    """Reads a route adds to the caller's API-key lookup (`kit.routing.rides_with_caller`),
    so they cost no round trip of their own."""

    name: str  # the extended lookup is built once per name
    # Labelled scalar subqueries, given the caller's org id column; the same for every `name`.
    columns: Callable[[Any], tuple[Any, ...]]
    params: Mapping[str, Any]  # bound to those columns (names distinct from the lookup's)


@dataclass(slots=True)
class ApiKeyPrincipal:
    key: ApiKeyRef
    organization: Organization
    plan_inputs: PlanInputs
    # The rider the lookup carried and the row's values under its labels.
    rider: CallerRider | None = None
    rider_values: Mapping[str, Any] | None = None


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


@dataclass(frozen=True, slots=True)
class NamedOrg:
    """The organization a user's request names, read once (for its bucket and its guard):
    the org, the user's membership role there (None: not a member) and its plan inputs."""

    organization: Organization
    membership_role: str | None
    plan_inputs: PlanInputs


@dataclass(slots=True)
class Caller:
    """Who a request comes from, resolved once before routing (middleware/ratelimit.py)."""

    client_ip: str
    principal: Principal | None = None
    # Why the credentials failed (or the error reading them): raised by routes needing a caller.
    failure: Exception | None = None
    # A user's named org, by id (value None: no such org).
    named_org_id: uuid.UUID | None = None
    named_org: NamedOrg | None = None
    # The organization the request acts for (its bucket) and its effective plan, if any.
    acting_org: Organization | None = None
    effective_plan: EffectivePlan | None = None

    def named(self, org_id: uuid.UUID) -> NamedOrg | bool | None:
        """The cached read of `org_id`, or False when it was not read."""
        return self.named_org if self.named_org_id == org_id else False


# An organization's own API key acts with admin rights: everything but deleting the org.
API_KEY_ROLE = Role.ADMIN
# A superadmin reading an org they do not belong to, without impersonating it.
SUPERADMIN_READ_ROLE = Role.MEMBER

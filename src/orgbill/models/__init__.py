"""Every table, imported here so Alembic's autogenerate sees them all."""

from orgbill.models.api_key import ApiKey
from orgbill.models.audit_log import AuditLog
from orgbill.models.base import Base
from orgbill.models.credit_balance import CreditBalance
from orgbill.models.credit_grant import CreditGrant, CreditGrantKind
from orgbill.models.credit_ledger_entry import CreditEntryKind, CreditLedgerEntry
from orgbill.models.enterprise_contract import EnterpriseContract
from orgbill.models.invoice import Invoice
from orgbill.models.membership import Membership, Role
from orgbill.models.organization import Organization, OrganizationStatus
from orgbill.models.plan import PlanCatalog
from orgbill.models.reservation import Reservation, ReservationState
from orgbill.models.stripe_event import StripeEvent, StripeEventStatus
from orgbill.models.subscription import Subscription
from orgbill.models.usage_event import UsageEvent
from orgbill.models.usage_total import UsageTotal
from orgbill.models.user import User
from orgbill.models.webhook_delivery import WebhookDelivery, WebhookDeliveryStatus
from orgbill.models.webhook_endpoint import WebhookEndpoint
from orgbill.models.webhook_event import WebhookEvent
from orgbill.models.webhook_plan_announcement import WebhookPlanAnnouncement

__all__ = [
    "ApiKey",
    "AuditLog",
    "Base",
    "CreditBalance",
    "CreditEntryKind",
    "CreditGrant",
    "CreditGrantKind",
    "CreditLedgerEntry",
    "EnterpriseContract",
    "Invoice",
    "Membership",
    "Organization",
    "OrganizationStatus",
    "PlanCatalog",
    "Reservation",
    "ReservationState",
    "Role",
    "StripeEvent",
    "StripeEventStatus",
    "Subscription",
    "UsageEvent",
    "UsageTotal",
    "User",
    "WebhookDelivery",
    "WebhookDeliveryStatus",
    "WebhookEndpoint",
    "WebhookEvent",
    "WebhookPlanAnnouncement",
]

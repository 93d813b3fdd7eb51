"""Reads for accounts. Customer-facing reads are scoped through ``tenancy``."""

from django.db.models import BooleanField, ExpressionWrapper, F, Q, QuerySet

from .models import ApiKey, AuditLog, Contact, Customer, Membership
from .tenancy import scoped


def customer_list(*, principal) -> QuerySet[Customer]:
    return scoped(Customer.objects.all(), principal)


def contact_list(*, principal) -> QuerySet[Contact]:
    return scoped(Contact.objects.select_related("customer", "user"), principal)


def member_list(*, principal) -> QuerySet[Membership]:
    # Accepted members first (False sorts before True), then pending invitations.
    pending = ExpressionWrapper(Q(accepted_at__isnull=True), output_field=BooleanField())
    return scoped(Membership.objects.select_related("user", "invited_by"), principal).order_by(
        pending, "user__email"
    )


def api_key_list(*, principal) -> QuerySet[ApiKey]:
    # Active keys first, newest first within each group.
    return scoped(ApiKey.objects.select_related("created_by", "revoked_by"), principal).order_by(
        F("revoked_at").asc(nulls_first=True), "-created_at"
    )


def audit_log_for(*, customer: Customer) -> QuerySet[AuditLog]:
    return AuditLog.objects.filter(customer=customer)

"""Customers (tenants): create and change, audited; external ids stay unique."""

from django.db import IntegrityError, transaction

from ..errors import Conflict
from ..models import Customer
from .audit import (
    Actor,
    audit_record,
    changed_fields,
    reject_unknown_fields,
    snapshot,
    validate_model,
)

CUSTOMER_AUDIT_FIELDS = ("name", "external_id", "currency", "timezone", "billing_email", "status")
CUSTOMER_UPDATABLE_FIELDS = frozenset(CUSTOMER_AUDIT_FIELDS)


def _save_customer(customer: Customer) -> None:
    try:
        with transaction.atomic():
            customer.save()
    except IntegrityError as exc:
        if "external_id" in str(exc):
            raise Conflict(
                f"A customer with external_id {customer.external_id!r} already exists.",
                code="external_id_conflict",
                field="external_id",
            ) from exc
        raise


@transaction.atomic
def customer_create(
    *,
    actor: Actor,
    name: str,
    external_id: str,
    billing_email: str,
    currency: str = "USD",
    timezone: str = "UTC",
    status: str = Customer.Status.ACTIVE,
) -> Customer:
    customer = Customer(
        name=name,
        external_id=external_id,
        billing_email=billing_email,
        currency=currency,
        timezone=timezone,
        status=status,
    )
    validate_model(customer)
    _save_customer(customer)
    audit_record(
        actor=actor,
        action="customer.created",
        obj=customer,
        customer=customer,
        after=snapshot(customer, CUSTOMER_AUDIT_FIELDS),
    )
    return customer


@transaction.atomic
def customer_update(*, actor: Actor, customer: Customer, **changes) -> Customer:
    reject_unknown_fields(changes, CUSTOMER_UPDATABLE_FIELDS, what="customer")
    customer = Customer.objects.select_for_update().get(pk=customer.pk)
    before = snapshot(customer, CUSTOMER_AUDIT_FIELDS)
    for name, value in changes.items():
        setattr(customer, name, value)
    validate_model(customer)
    old, new = changed_fields(before, snapshot(customer, CUSTOMER_AUDIT_FIELDS))
    if not new:
        return customer
    _save_customer(customer)
    audit_record(
        actor=actor,
        action="customer.updated",
        obj=customer,
        customer=customer,
        before=old,
        after=new,
    )
    return customer

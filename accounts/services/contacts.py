"""Contacts: the stakeholders alerts reach, with their personas and channels."""

from django.db import IntegrityError, transaction

from ..errors import Conflict, InvalidInput
from ..models import Contact, Customer, Membership
from .audit import (
    Actor,
    audit_record,
    changed_fields,
    reject_unknown_fields,
    snapshot,
    validate_model,
)

CONTACT_FIELDS = (
    "name",
    "persona",
    "email",
    "slack_webhook_url",
    "teams_webhook_url",
    "webhook_url",
    "user",
)


def _save_contact(contact: Contact) -> None:
    try:
        with transaction.atomic():
            contact.save()
    except IntegrityError as exc:
        if "contact_unique_email_per_customer" in str(exc):
            raise Conflict(
                f"Another contact of this customer already uses {contact.email}.",
                code="duplicate_email",
                field="email",
            ) from exc
        raise


def _clean_contact(contact: Contact) -> None:
    """What every saved contact satisfies: a lowercase email, a channel, a teammate as user."""
    contact.email = contact.email.strip().lower()
    if not contact.channels:
        raise InvalidInput(
            "Give at least one channel: an email address or a webhook URL.", code="no_channel"
        )
    _check_contact_user(contact)
    validate_model(contact)


def _check_contact_user(contact: Contact) -> None:
    if (
        contact.user_id
        and not Membership.objects.filter(
            user_id=contact.user_id, customer_id=contact.customer_id
        ).exists()
    ):
        raise InvalidInput("The linked user must be a member of the same customer.", field="user")


@transaction.atomic
def contact_create(*, actor: Actor, customer: Customer, **fields) -> Contact:
    reject_unknown_fields(fields, CONTACT_FIELDS, what="contact")
    contact = Contact(customer=customer, **fields)
    _clean_contact(contact)
    _save_contact(contact)
    audit_record(
        actor=actor,
        action="contact.created",
        obj=contact,
        customer=customer,
        after=snapshot(contact, CONTACT_FIELDS),
    )
    return contact


@transaction.atomic
def contact_update(*, actor: Actor, contact: Contact, **changes) -> Contact:
    reject_unknown_fields(changes, CONTACT_FIELDS, what="contact")
    contact = Contact.objects.select_for_update().select_related("customer").get(pk=contact.pk)
    before = snapshot(contact, CONTACT_FIELDS)
    for name, value in changes.items():
        setattr(contact, name, value)
    _clean_contact(contact)
    old, new = changed_fields(before, snapshot(contact, CONTACT_FIELDS))
    if not new:
        return contact
    _save_contact(contact)
    audit_record(
        actor=actor,
        action="contact.updated",
        obj=contact,
        customer=contact.customer,
        before=old,
        after=new,
    )
    return contact


@transaction.atomic
def contact_delete(*, actor: Actor, contact: Contact) -> None:
    audit_record(
        actor=actor,
        action="contact.deleted",
        obj=contact,
        customer=contact.customer,
        before=snapshot(contact, CONTACT_FIELDS),
    )
    contact.delete()

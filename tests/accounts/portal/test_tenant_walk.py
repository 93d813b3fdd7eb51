"""The tenant-isolation walk for the portal.

Every URL pattern of the portal's namespaces (``portal``, ``usage``, ``billing``) that takes
an object from the URL is requested by a signed-in owner of customer A (who may do
everything) against an object of customer B, with GET and POST: each must answer 404 and
leave B's data exactly as it was. A new pattern whose kwargs this test cannot fill fails
the walk, so no future page slips past it.
"""

from collections.abc import Callable, Iterator

import pytest
from django.db.models import Model
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts.models import ApiKey, AuditLog, Contact, Customer, Membership
from accounts.roles import Role
from alerts import services as alerts
from alerts.models import Alert, AlertRule, AlertSeen, Cap, WebhookEndpoint, WebhookSecret
from invoicing.models import CreditNote, Dispute, Invoice
from tests.accounts.factories import ContactFactory, MembershipFactory, make_api_key
from tests.accounts.portal.helpers import HTMX, signed_in
from tests.alerts.alert_factories import make_alert
from tests.invoicing.portal.helpers import extra_invoice
from tests.metering.factories import api_calls_meter

pytestmark = pytest.mark.django_db

PORTAL_NAMESPACES = ("portal", "usage", "billing", "alerts")


def finalized_invoice(customer: Customer) -> Invoice:
    """The customer's one finalized invoice (made once), whose usage line the line pages use."""
    found = Invoice.objects.filter(customer=customer).first()
    return found or extra_invoice(customer, api_calls_meter(), index=Invoice.objects.count())


# URL kwarg -> how to make such an object in a given customer.
OBJECT_FACTORIES: dict[str, Callable[[Customer], Model]] = {
    # Pending, so resend/role/remove would all have something to change.
    "membership_id": lambda customer: MembershipFactory(
        customer=customer, role=Role.ADMIN, accepted_at=None
    ),
    "contact_id": lambda customer: ContactFactory(customer=customer),
    "key_id": lambda customer: make_api_key(customer=customer)[0],
    # A line URL names its invoice too: both come from the customer's one invoice.
    "invoice_id": finalized_invoice,
    "line_id": lambda customer: finalized_invoice(customer).lines.get(position=1),
    "alert_id": lambda customer: make_alert(customer, title=f"{customer.name} alert"),
    "endpoint_id": lambda customer: alerts.endpoint_create(
        actor=None, customer=customer, url=f"https://{customer.external_id}.example.com/hook"
    ),
    "cap_id": lambda customer: Cap.objects.create(
        customer=customer, meter=api_calls_meter(), limit=1000
    ),
    "rule_id": lambda customer: AlertRule.objects.create(
        customer=customer, kind="threshold", meter=api_calls_meter(), levels=[100, 200]
    ),
}

# (pattern name, kwarg) pairs that name no tenant object, each with the reason.
NOT_TENANT_OBJECTS = {
    ("portal:invitation_accept", "token"): "a signed, expiring capability emailed to one person; "
    "whoever holds it may accept it (covered in test_team.py)",
}

# Enough fields for any portal form, so an unscoped view would have something to write.
POST_DATA = {
    "role": "viewer",
    "name": "Taken over",
    "persona": "executive",
    "email": "attacker@alpha.example.com",
    "webhook_url": "https://attacker.example.com/hook",
    "environment": "live",
    "scopes": ["usage:read"],
    "message": "Taken over",
    "url": "https://attacker.example.com/hook",
    "enabled": "",
    "overlap_hours": "0",
    "limit": "1",
    "levels": "1",
}


def portal_patterns() -> Iterator[tuple[str, URLPattern]]:
    """("namespace:name", pattern) for every pattern under the portal's namespaces."""

    def walk(patterns, namespaces):
        for entry in patterns:
            if isinstance(entry, URLResolver):
                yield from walk(
                    entry.url_patterns,
                    [*namespaces, entry.namespace] if entry.namespace else namespaces,
                )
            elif namespaces and namespaces[-1] in PORTAL_NAMESPACES:
                yield f"{namespaces[-1]}:{entry.name}", entry

    yield from walk(get_resolver().url_patterns, [])


def url_kwargs(pattern: URLPattern) -> list[str]:
    return list(pattern.pattern.regex.groupindex)


def snapshot(customer: Customer) -> dict:
    """Everything of the customer the portal could change."""
    rows = {
        model.__name__: list(model.objects.filter(customer=customer).order_by("pk").values())
        for model in (
            Membership,
            Contact,
            ApiKey,
            AuditLog,
            Invoice,
            CreditNote,
            Dispute,
            Alert,
            AlertRule,
            Cap,
            WebhookEndpoint,
        )
    }
    rows["WebhookSecret"] = list(
        WebhookSecret.objects.filter(endpoint__customer=customer).order_by("pk").values()
    )
    rows["AlertSeen"] = list(AlertSeen.objects.filter(alert__customer=customer).values())
    return rows


def test_every_portal_object_url_answers_404_for_another_tenants_object(
    client, customer_a, owner_a, customer_b, owner_b
):
    signed_in(client, owner_a)
    objects_of_b = {kwarg: make(customer_b) for kwarg, make in OBJECT_FACTORIES.items()}
    before = snapshot(customer_b)

    walked, unknown = [], []
    for name, pattern in portal_patterns():
        kwargs = url_kwargs(pattern)
        if not kwargs:
            continue
        fillable = [k for k in kwargs if k in OBJECT_FACTORIES]
        exempt = [k for k in kwargs if (name, k) in NOT_TENANT_OBJECTS]
        if len(fillable) + len(exempt) != len(kwargs) or (exempt and fillable):
            unknown.append((name, kwargs))
            continue
        if exempt:
            continue
        url = reverse(name, kwargs={k: objects_of_b[k].pk for k in kwargs})
        for method, headers in (("get", {}), ("post", {}), ("post", HTMX)):
            call = getattr(client, method)
            response = call(url, POST_DATA, headers=headers) if method == "post" else call(url)
            assert response.status_code == 404, (
                f"{method.upper()} {url} ({name}) -> {response.status_code}"
            )
            assert b"Taken over" not in response.content
        walked.append(name)

    assert not unknown, (
        f"Portal URL patterns with kwargs this walk cannot fill: {unknown}. Add a factory to "
        "OBJECT_FACTORIES (or, for a kwarg that is not a tenant object, a reasoned entry to "
        "NOT_TENANT_OBJECTS)."
    )
    # The walk really walked: every kind of object was tried on at least one page.
    assert set(walked) >= {
        "portal:member_role",
        "portal:member_remove",
        "portal:member_resend",
        "portal:contact_edit",
        "portal:contact_delete",
        "portal:key_revoke",
        "billing:invoice",
        "billing:line_events",
        "billing:line_events_export",
        "billing:line_dispute",
        "alerts:alert_seen",
        "alerts:history_alert",
        "alerts:webhook_edit",
        "alerts:webhook_delete",
        "alerts:webhook_rotate",
        "alerts:webhook_secret",
    }
    assert snapshot(customer_b) == before


def test_the_same_urls_work_for_the_owners_own_objects(client, customer_a, owner_a):
    """The walk's 404s come from scoping, not from broken URLs: A's own objects are found."""
    signed_in(client, owner_a)
    objects_of_a = {kwarg: make(customer_a) for kwarg, make in OBJECT_FACTORIES.items()}

    for name, pattern in portal_patterns():
        kwargs = url_kwargs(pattern)
        if not kwargs or not all(k in OBJECT_FACTORIES for k in kwargs):
            continue
        response = client.get(reverse(name, kwargs={k: objects_of_a[k].pk for k in kwargs}))
        assert response.status_code in (200, 405), (name, response.status_code)


def test_walk_finds_the_portal_patterns():
    names = {name for name, _ in portal_patterns()}

    assert {
        "portal:home",
        "portal:login",
        "portal:team",
        "portal:keys",
        "portal:invitation_accept",
        "portal:contact_edit",
        "portal:key_revoke",
        "usage:dashboard",
        "billing:home",
        "billing:invoice",
        "billing:line_dispute",
        "alerts:notifications",
        "alerts:history",
        "alerts:webhooks",
    } <= names

"""The tenant-isolation walk over every API route.

Customer A's key asks for customer B's objects through every route under /api/v1/ that takes
an object in its URL, with every method the view has: the answer is 404 (never 403 for an
object, never data) and B's object is unchanged. Every route without an object is read as A
and must not show any of B's data.

A new route with URL kwargs makes the walk fail until ``OBJECT_ROUTES`` says how to make an
object of each customer for it, so no endpoint can slip past.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.db.models import Model
from django.urls import reverse
from django.utils import timezone

from accounts.api.errors import api_not_found
from accounts.models import ApiKey, Customer
from accounts.scopes import ALL_SCOPES
from alerts import services as alerts
from alerts.models import Alert, AlertRule, Cap, PlanCapDefault, WebhookEndpoint
from invoicing import services as invoicing
from invoicing.models import Invoice, Plan
from metering.ingest import events_ingest
from metering.models import Meter
from tests.accounts.api.support import Route, api, api_routes
from tests.accounts.factories import ContactFactory, make_api_key
from tests.metering.factories import MeterFactory, event

pytestmark = pytest.mark.django_db

WRITE_METHODS = ("post", "put", "patch")


@dataclass(frozen=True)
class ObjectRoute:
    make: Callable[[Customer], Model]  # an object belonging to the given customer
    kwargs: Callable[[Model], dict]  # the URL kwargs that name it
    change: dict  # a body that would change it, were the write let through
    # Vendor-wide definitions (meters) are not tenant data: every key may read the same
    # object, and no customer key may change it whatever its scopes.
    shared: bool = False


def _contact_of(customer: Customer):
    return ContactFactory(
        customer=customer,
        name=f"{customer.name} contact",
        email=f"contact@{customer.external_id}.example.com",
    )


WALK_METER = "walk_call"


def _meter_with_usage_of(customer: Customer):
    """The one vendor-wide meter, plus an event of ``customer`` on it, so that the event
    list and usage routes have something of A's (and of B's, to leak) to show."""
    meter = MeterFactory(code=WALK_METER, name="Walk calls")
    moment = (timezone.now() - timedelta(hours=1)).isoformat()
    events_ingest(events=[event(customer, f"walk-{customer.pk}", name=WALK_METER, ts=moment)])
    return meter


WALK_PLAN, WALK_PLUS_PLAN = "walk", "walk_plus"


def _walk_plan(code: str = WALK_PLAN) -> Plan:
    """A plan of the vendor's catalog (shared, like meters): a flat monthly fee."""
    plan = Plan.objects.filter(code=code).first()
    if plan is None:
        plan = invoicing.plan_create(actor=None, code=code, name=code.title(), currency="USD")
        invoicing.plan_version_create(
            actor=None,
            plan=plan,
            interval="month",
            components=[{"kind": "flat_fee", "amount": "10"}],
        )
    return plan


def _billing_of(customer: Customer) -> dict[str, Model]:
    """The customer's subscription, started 75 days ago: its first period invoiced, finalized
    and partly credited, its second a draft (which customer keys never see)."""
    subscription = customer.subscriptions.first()
    if subscription is None:
        now = timezone.now()
        _walk_plan(WALK_PLUS_PLAN)
        subscription = invoicing.subscription_create(
            actor=None,
            customer=customer,
            plan_version=_walk_plan().versions.get(),
            started_at=now - timedelta(days=75),
        )
        first = invoicing.period_close(subscription_id=subscription.pk, now=now)
        invoicing.invoice_finalize(actor=None, invoice=first, now=now)
        credit = invoicing.CreditRequest(first.lines.get().pk, 100)
        invoicing.credit_note_issue(
            actor=None, invoice=first, reason="goodwill", memo="Walk credit", lines=[credit]
        )
        invoicing.period_close(subscription_id=subscription.pk, now=now)
    final, draft = Invoice.objects.filter(subscription=subscription).order_by("period_start")
    return {"subscription": subscription, "final": final, "draft": draft, "customer": customer}


def _cap_of(customer: Customer) -> Cap:
    meter = Meter.objects.filter(code=WALK_METER).first() or _meter_with_usage_of(customer)
    return Cap.objects.get_or_create(customer=customer, meter=meter, defaults={"limit": 100})[0]


def _alert_of(customer: Customer) -> Alert:
    """An alert of the customer's, named after it so a leak shows (history routes)."""
    now = timezone.now()
    return Alert.objects.create(
        customer=customer,
        kind="threshold",
        period_start=now - timedelta(days=3),
        period_end=now + timedelta(days=27),
        level=f"walk-{customer.pk}",
        title=f"{customer.name} passed a level",
        summary=f"{customer.name} used a lot",
        triggered_at=now,
    )


def _endpoint_of(customer: Customer) -> WebhookEndpoint:
    found = WebhookEndpoint.objects.filter(customer=customer).first()
    return found or alerts.endpoint_create(
        actor=None,
        customer=customer,
        url=f"https://{customer.external_id}.example.com/hooks",
        description=f"{customer.name} receiver",
    )


def _billing(part: str) -> Callable[[Customer], Model]:
    return lambda customer: _billing_of(customer)[part]


OBJECT_ROUTES: dict[str, ObjectRoute] = {
    "api/v1/customers/<str:external_id>": ObjectRoute(
        make=lambda customer: customer,
        kwargs=lambda obj: {"external_id": obj.external_id},
        change={"name": "Taken over", "billing_email": "thief@alpha.example.com"},
    ),
    "api/v1/contacts/<int:contact_id>": ObjectRoute(
        make=_contact_of,
        kwargs=lambda obj: {"contact_id": obj.pk},
        change={"name": "Taken over", "email": "thief@alpha.example.com"},
    ),
    # Meters are the vendor's definitions, the same for every customer (not tenant data).
    "api/v1/meters/<str:code>": ObjectRoute(
        make=_meter_with_usage_of,
        kwargs=lambda obj: {"code": obj.code},
        change={"name": "Taken over", "aggregation": "sum", "value_property": "n"},
        shared=True,
    ),
    # Plans are the vendor's catalog, the same for every customer (not tenant data).
    "api/v1/plans/<str:code>": ObjectRoute(
        make=lambda customer: _walk_plan(),
        kwargs=lambda obj: {"code": obj.code},
        change={},
        shared=True,
    ),
    "api/v1/plans/<str:code>/versions": ObjectRoute(
        make=lambda customer: _walk_plan(),
        kwargs=lambda obj: {"code": obj.code},
        change={"interval": "month", "components": [{"kind": "flat_fee", "amount": "1"}]},
        shared=True,
    ),
    "api/v1/subscriptions/<int:subscription_id>": ObjectRoute(
        make=_billing("subscription"),
        kwargs=lambda obj: {"subscription_id": obj.pk},
        change={},
    ),
    "api/v1/subscriptions/<int:subscription_id>/change-plan": ObjectRoute(
        make=_billing("subscription"),
        kwargs=lambda obj: {"subscription_id": obj.pk},
        change={"plan": WALK_PLUS_PLAN},
    ),
    "api/v1/subscriptions/<int:subscription_id>/cancel": ObjectRoute(
        make=_billing("subscription"),
        kwargs=lambda obj: {"subscription_id": obj.pk},
        change={"at_period_end": False},
    ),
    "api/v1/invoices/<int:invoice_id>": ObjectRoute(
        make=_billing("final"),
        kwargs=lambda obj: {"invoice_id": obj.pk},
        change={},
    ),
    "api/v1/invoices/<int:invoice_id>/credit-notes": ObjectRoute(
        make=_billing("final"),
        kwargs=lambda obj: {"invoice_id": obj.pk},
        change={"reason": "goodwill", "memo": "Taken over"},
    ),
    "api/v1/invoices/<int:invoice_id>/finalize": ObjectRoute(
        make=_billing("draft"),
        kwargs=lambda obj: {"invoice_id": obj.pk},
        change={},
    ),
    "api/v1/invoices/<int:invoice_id>/void": ObjectRoute(
        make=_billing("final"),
        kwargs=lambda obj: {"invoice_id": obj.pk},
        change={"reason": "Taken over"},
    ),
    "api/v1/caps/<int:cap_id>": ObjectRoute(
        make=_cap_of,
        kwargs=lambda obj: {"cap_id": obj.pk},
        change={"limit": "1"},
    ),
    "api/v1/alerts/<int:alert_id>": ObjectRoute(
        make=_alert_of,
        kwargs=lambda obj: {"alert_id": obj.pk},
        change={},
    ),
    "api/v1/webhook-endpoints/<int:endpoint_id>": ObjectRoute(
        make=_endpoint_of,
        kwargs=lambda obj: {"endpoint_id": obj.pk},
        change={"url": "https://attacker.example.com/hooks", "enabled": False},
    ),
    "api/v1/webhook-endpoints/<int:endpoint_id>/rotate-secret": ObjectRoute(
        make=_endpoint_of,
        kwargs=lambda obj: {"endpoint_id": obj.pk},
        change={"overlap_hours": 0},
    ),
    "api/v1/alert-rules/<int:rule_id>": ObjectRoute(
        make=lambda c: AlertRule.objects.create(
            customer=c, kind="threshold", meter=_cap_of(c).meter
        ),
        kwargs=lambda obj: {"rule_id": obj.pk},
        change={"levels": ["1"]},
    ),
    # Plan cap defaults are the vendor's catalog (like plans); only operators change them.
    "api/v1/plan-cap-defaults/<int:default_id>": ObjectRoute(
        make=lambda c: PlanCapDefault.objects.get_or_create(
            plan=_walk_plan(), meter=_cap_of(c).meter, defaults={"limit": 100}
        )[0],
        kwargs=lambda obj: {"default_id": obj.pk},
        change={},
        shared=True,
    ),
    "api/v1/customers/<str:external_id>/upcoming-invoice": ObjectRoute(
        make=_billing("customer"),
        kwargs=lambda obj: {"external_id": obj.external_id},
        change={},
    ),
}

# Routes without an object that need query parameters to answer at all.
LIST_QUERIES: dict[str, Callable[[], dict]] = {
    "api/v1/forecast": lambda: {"meter": WALK_METER},
    "api/v1/usage": lambda: {
        "meter": WALK_METER,
        "start": (timezone.now() - timedelta(days=1)).isoformat(),
        "end": (timezone.now() + timedelta(hours=1)).isoformat(),
    },
}


def _is_catch_all(route: Route) -> bool:
    return getattr(route.callback, "__wrapped__", route.callback) is api_not_found


def _state(obj: Model) -> dict | None:
    """Every column of the object as stored now (None once it is gone)."""
    return type(obj).objects.filter(pk=obj.pk).values().first()


def _error_code(response) -> str | None:
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def _strings(value) -> set[str]:
    if isinstance(value, dict):
        return set().union(*(_strings(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_strings(v) for v in value)) if value else set()
    return {value} if isinstance(value, str) else set()


@pytest.fixture(params=["customer-scopes", "every-scope"])
def key_a(request, customer_a) -> tuple[ApiKey, str]:
    """A's key with every scope a customer key may hold, or (forced past the service's
    rules) every scope there is: tenancy must hold even if a key's scopes were wrong."""
    key, token = make_api_key(customer=customer_a)
    if request.param == "every-scope":
        ApiKey.objects.filter(pk=key.pk).update(scopes=list(ALL_SCOPES))
        key.refresh_from_db()
    return key, token


def test_the_walk_finds_the_api(db):
    routes = {r.route for r in api_routes()}
    assert set(OBJECT_ROUTES) <= routes, "OBJECT_ROUTES names a route that no longer exists"
    assert {"api/v1/customers", "api/v1/contacts", "api/v1/me"} <= routes


def test_customer_a_cannot_reach_customer_b_objects_through_any_route(
    customer_a, customer_b, key_a
):
    key, token = key_a
    client = api(token)
    object_routes = [r for r in api_routes() if r.kwargs]
    unknown = [r.route for r in object_routes if r.route not in OBJECT_ROUTES]
    if unknown:
        pytest.fail(f"Teach the tenant walk (OBJECT_ROUTES) how to make objects for: {unknown}")

    failures = []
    for route in object_routes:
        spec = OBJECT_ROUTES[route.route]
        assert route.name, f"{route.route} needs a name so the walk can reverse it"
        assert route.methods, f"{route.route}: no view class to read the methods from"
        own, theirs = spec.make(customer_a), spec.make(customer_b)
        own_url = reverse(route.name, kwargs=spec.kwargs(own))
        their_url = reverse(route.name, kwargs=spec.kwargs(theirs))
        if "get" in route.methods:
            # The URL is filled right: A reaches its own object, so a 404 below is tenancy's doing.
            assert client.get(own_url).status_code == 200, own_url

        for method in route.methods:
            before = _state(theirs)
            body = spec.change if method in WRITE_METHODS else None
            response = getattr(client, method)(their_url, body, format="json")
            scope = getattr(route.view_class, "required_scopes", {}).get(method.upper())
            if scope and scope not in key.scopes:
                # Refused before any lookup, exactly as for A's own object: no oracle.
                expected = (403, "insufficient_scope")
            elif spec.shared:
                expected = (200, None) if method == "get" else (403, "operator_key_required")
            else:
                expected = (404, "not_found")
            got = (response.status_code, _error_code(response))
            if got != expected:
                failures.append(f"{method.upper()} {their_url}: {got}, expected {expected}")
            if _state(theirs) != before:
                failures.append(f"{method.upper()} {their_url} changed customer B's object")
    assert not failures, "\n".join(failures)


def test_no_api_route_shows_customer_b_data_to_customer_a(customer_a, customer_b, key_a):
    _, token = key_a
    client = api(token)
    for spec in OBJECT_ROUTES.values():
        spec.make(customer_a)
        spec.make(customer_b)
    b_contact = customer_b.contacts.get()
    b_markers = {
        customer_b.external_id,
        customer_b.name,
        customer_b.billing_email,
        b_contact.name,
        b_contact.email,
    }
    # Long enough not to turn up by chance in the schema or the docs page.
    b_phrases = b_markers - {customer_b.external_id}

    checked = []
    for route in api_routes():
        if route.kwargs or _is_catch_all(route):
            continue
        if route.view_class is not None and "get" not in route.methods:
            continue  # nothing to read (a write-only endpoint)
        assert "<" not in route.route and "^" not in route.route, f"cannot request {route.route}"
        url = "/" + route.route
        query = LIST_QUERIES[route.route]() if route.route in LIST_QUERIES else None
        response = client.get(url, query)
        assert response.status_code == 200, (url, response.content[:300])
        if response["Content-Type"].startswith("application/json"):
            body = response.json()
            assert not _strings(body) & b_markers, f"{url} shows customer B's data"
            if "results" in body:
                # A sees its own rows, so an empty list cannot pass for isolation.
                assert body["results"], f"{url} lists nothing, not even A's own data"
                checked.append(url)
        else:
            text = response.content.decode()
            assert not [p for p in b_phrases if p in text], f"{url} shows customer B's data"
    assert {
        "/api/v1/customers",
        "/api/v1/contacts",
        "/api/v1/events",
        "/api/v1/subscriptions",
        "/api/v1/invoices",
        "/api/v1/credit-notes",
        "/api/v1/plans",
        "/api/v1/alerts",
        "/api/v1/webhook-endpoints",
    } <= set(checked)

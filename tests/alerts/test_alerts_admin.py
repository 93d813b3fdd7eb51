"""Alerts in the Django admin: staff look at customers' rules, caps, alerts, deliveries,
endpoints and signals; finance manages plan defaults and replays deliveries, all through
the services; no signing secret is ever shown."""

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from accounts import services as account_services
from accounts.models import AuditLog
from alerts import services as rule_services
from alerts.models import (
    AlertRule,
    Cap,
    Delivery,
    ExpansionSignal,
    PlanCapDefault,
    WebhookEndpoint,
    WebhookSecret,
)
from alerts.services import cap_set, endpoint_create, endpoint_rotate_secret
from tests.accounts.factories import ContactFactory, CustomerFactory, UserFactory
from tests.alerts.alert_factories import make_alert, make_delivery
from tests.alerts.receivers import Receiver
from tests.invoicing.factories import per_unit, plan_version, subscribe
from tests.metering.factories import api_calls_meter

pytestmark = pytest.mark.django_db

STARTED = datetime(2026, 1, 1, tzinfo=UTC)
MODELS = [
    "alertrule",
    "plancapdefault",
    "cap",
    "alert",
    "delivery",
    "webhookendpoint",
    "expansionsignal",
]


def url(model, view="changelist", *args):
    return reverse(f"admin:alerts_{model}_{view}", args=args)


def staff_client(client, group_name):
    account_services.staff_groups_sync()
    user = UserFactory(is_staff=True, email=f"{group_name}@vendor.example.com")
    user.groups.add(Group.objects.get(name=group_name))
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def finance(client):
    return staff_client(client, "finance")


@pytest.fixture
def superuser(client):
    client.user = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(client.user)
    return client


@pytest.fixture(params=["superuser", "finance"])
def staff(request):
    return request.getfixturevalue(request.param)


def act(client, model, action, objects, **data):
    """Run an admin action on ``objects``; ``data`` answers its confirmation page."""
    post = {"action": action, "_selected_action": [o.pk for o in objects], **data}
    if data:
        post["apply"] = "1"
    return client.post(url(model), post)


def message_texts(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


# --- The world under test -------------------------------------------------------------------


@pytest.fixture
def calls(db):
    return api_calls_meter()


@pytest.fixture
def growth(calls):
    return plan_version(code="growth", components=[per_unit(calls, "0.01", included="1000")])


@pytest.fixture
def world(customer_a, calls, growth):
    """Alpha on growth, with its own rule, a copy of growth's default rule and cap, an alert
    delivered once and failed once, a webhook endpoint and an expansion signal."""
    subscribe(customer_a, growth, at=STARTED)
    own = rule_services.rule_create(
        actor=None, customer=customer_a, name="Mine", meter=calls, levels=["5000", "8000"]
    )
    default = rule_services.rule_create(
        actor=None,
        plan=growth.plan,
        name="Included units",
        meter=calls,
        basis="percent_included",
        levels=["80", "100"],
        audience=["finance"],
    )
    cap_default = rule_services.plan_cap_default_set(
        actor=None, plan=growth.plan, meter=calls, limit="20000"
    )
    endpoint = endpoint_create(
        actor=None, customer=customer_a, url="https://hooks.alpha.example.com/meterbook"
    )
    alert = make_alert(
        customer_a,
        rule=own,
        meter=calls,
        level="5000",
        title="API calls passed 5,000",
        evidence={"usage": "5200", "level": "5000", "budget": {"currency": "USD"}},
    )
    delivered = make_delivery(alert, target="dev@alpha.example.com", channel="email")
    failed = make_delivery(
        alert,
        endpoint=endpoint,
        target=endpoint.url,
        status=Delivery.Status.FAILED,
        attempts=[("failed", 503), ("failed", 503)],
        last_error="HTTP 503",
    )
    signal = ExpansionSignal.objects.create(
        customer=customer_a,
        kind=ExpansionSignal.Kind.TIER_TRENDING,
        alert=alert,
        meter=calls,
        evidence={"usage": "5200", "included": "1000", "trend": "up"},
        currency="USD",
        estimated_revenue_impact_minor=123450,
        created_at=timezone.now(),
    )
    return {
        "own": own,
        "default": default,
        "copy": AlertRule.objects.get(plan_default=default),
        "cap_default": cap_default,
        "cap": Cap.objects.get(customer=customer_a),
        "endpoint": endpoint,
        "alert": alert,
        "delivered": delivered,
        "failed": failed,
        "signal": signal,
    }


def some(world, model):
    return {
        "alertrule": world["own"],
        "plancapdefault": world["cap_default"],
        "cap": world["cap"],
        "alert": world["alert"],
        "delivery": world["failed"],
        "webhookendpoint": world["endpoint"],
        "expansionsignal": world["signal"],
    }[model]


# --- Pages ----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_every_list_and_detail_renders_for_superusers_and_finance(staff, world, model):
    listing = staff.get(url(model))
    owner = "Growth (USD)" if model == "plancapdefault" else "Alpha Analytics"
    assert listing.status_code == 200 and owner in listing.text
    assert staff.get(url(model), {"q": "alpha"}).status_code == 200
    detail = staff.get(url(model, "change", some(world, model).pk))
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.text  # customers' and the system's records: read-only


def test_the_rule_list_says_whose_each_rule_is_and_what_makes_it_fire(finance, world):
    page = html.unescape(finance.get(url("alertrule")).text)
    assert "Mine" in page and "5,000, 8,000" in page
    assert "Plan growth" in page and "copied onto 1 subscriber</td>" in page
    assert "Add a plan default rule" in page
    assert "80%, 100%" in page and "copy of plan growth's" in page
    assert "Finance" in page  # the default's audience

    def shown(**params):
        text = finance.get(url("alertrule"), params).text
        return {int(pk) for pk in re.findall(r'name="_selected_action" value="(\d+)"', text)}

    assert shown(owner="customer") == {world["own"].pk}
    assert shown(owner="copy") == {world["copy"].pk}
    assert shown(owner="plan") == {world["default"].pk}
    assert shown(basis__exact="percent_included") == {world["default"].pk, world["copy"].pk}
    assert shown(q="alpha") == {world["own"].pk, world["copy"].pk}
    assert shown(q="growth") == {world["default"].pk}


def test_the_rule_list_describes_each_kind_by_what_it_reads(finance, customer_b, calls):
    for kind, extra in [
        ("predictive", {"levels": ["50000"]}),
        ("velocity", {"factor": "3"}),
        ("anomaly", {}),
    ]:
        rule_services.rule_create(actor=None, customer=customer_b, kind=kind, meter=calls, **extra)
    page = finance.get(url("alertrule")).text
    assert "50,000 (80% likely within 14 d)" in page
    assert "3 times the rate: last 7 d against 28 d" in page
    assert "6 robust deviations" in page


def test_the_alert_page_pretty_prints_the_evidence_and_lists_the_deliveries(finance, world):
    page = finance.get(url("alert", "change", world["alert"].pk)).text
    assert '<pre class="mb-evidence">' in page
    evidence = html.unescape(page)
    assert '  "budget": {\n    "currency": "USD"\n  },\n  "level": "5000"' in evidence
    assert "dev@alpha.example.com" in page and world["endpoint"].url in page
    assert "HTTP 503" in page
    assert "Mine" in page  # the rule it fired for
    assert url("expansionsignal", "change", world["signal"].pk) in page


def test_the_alert_list_filters_by_severity_status_and_month(finance, world, customer_b):
    later = make_alert(
        customer_b,
        title="Anomaly on API calls",
        kind="anomaly",
        severity="critical",
        status="resolved",
        triggered_at=datetime(2026, 3, 5, tzinfo=UTC),
        resolved_at=datetime(2026, 3, 6, tzinfo=UTC),
    )

    def shown(**params):
        text = finance.get(url("alert"), params).text
        return {a.title for a in (world["alert"], later) if a.title in text}

    assert shown(severity__exact="critical") == {later.title}
    assert shown(status__exact="open") == {world["alert"].title}
    assert shown(kind__exact="threshold") == {world["alert"].title}
    assert shown(triggered_at__year=2026, triggered_at__month=3) == {later.title}
    assert shown(q="beta") == {later.title}
    assert shown(rule=world["own"].pk) == {world["alert"].title}


def test_the_delivery_page_shows_every_attempt(finance, world):
    page = finance.get(url("delivery", "change", world["failed"].pk)).text
    assert page.count("Service Unavailable") == 2 and page.count("http_status") == 2
    assert "503" in page and world["endpoint"].url in page
    assert 'value="replay"' in page  # a failed delivery offers its replay

    delivered = finance.get(url("delivery", "change", world["delivered"].pk)).text
    assert 'value="replay"' not in delivered


def test_the_delivery_list_filters_by_status_channel_persona_and_event(finance, world):
    def shown(**params):
        text = finance.get(url("delivery"), params).text
        found = {d.pk for d in (world["failed"], world["delivered"])}
        return {pk for pk in found if f"/delivery/{pk}/change/" in text}

    assert shown(status__exact="failed") == {world["failed"].pk}
    assert shown(channel__exact="email") == {world["delivered"].pk}
    assert shown(persona__exact="developer") == {world["failed"].pk, world["delivered"].pk}
    assert shown(event__exact="alert.resolved") == set()
    assert shown(endpoint=world["endpoint"].pk) == {world["failed"].pk}


def test_the_signal_list_shows_the_revenue_impact_in_money(finance, world, customer_b, calls):
    ExpansionSignal.objects.create(
        customer=customer_b,
        kind=ExpansionSignal.Kind.CAP_PRESSURE,
        meter=calls,
        currency="JPY",
        estimated_revenue_impact_minor=5000,
        created_at=timezone.now(),
    )
    page = finance.get(url("expansionsignal")).text
    assert "1,234.50 USD" in page and "5,000 JPY" in page
    filtered = finance.get(url("expansionsignal"), {"kind__exact": "cap_pressure"}).text
    assert "Beta Bakery" in filtered and "Alpha Analytics" not in filtered

    detail = html.unescape(finance.get(url("expansionsignal", "change", world["signal"].pk)).text)
    assert '"included": "1000",\n  "trend": "up"' in detail
    assert "API calls passed 5,000" in detail


def test_the_cap_pages_show_the_measure_and_the_plan_default(finance, world, customer_b, calls):
    own = cap_set(actor=None, customer=customer_b, meter=calls, limit="300")
    page = finance.get(url("cap")).text
    assert "Units of the meter" in page and "copy of plan growth&#x27;s" in page
    assert url("plancapdefault", "change", world["cap_default"].pk) in page
    detail = finance.get(url("cap", "change", own.pk)).text
    assert "the customer&#x27;s own" in detail


# --- Replaying deliveries ---------------------------------------------------------------------


def test_replay_sends_a_failed_delivery_again_and_audits_it(
    finance, customer_a, world, django_capture_on_commit_callbacks
):
    with Receiver() as receiver:
        endpoint = endpoint_create(actor=None, customer=customer_a, url=receiver.url("/hook"))
        failed = make_delivery(
            world["alert"],
            endpoint=endpoint,
            target=endpoint.url,
            status=Delivery.Status.FAILED,
            attempts=[("failed", 500)],
        )
        with django_capture_on_commit_callbacks(execute=True):
            response = act(finance, "delivery", "replay", [failed])

        assert len(receiver.requests) == 1
    failed.refresh_from_db()
    assert failed.status == "delivered" and failed.attempts == 1  # a fresh schedule
    assert list(failed.attempt_log.values_list("number", "status_code")) == [(1, 500), (2, 200)]
    assert message_texts(response) == [f"Replayed 1 delivery: #{failed.pk}."]
    audit = AuditLog.objects.get(action="delivery.replayed")
    assert (audit.actor_user, audit.object_id) == (finance.user, str(failed.pk))


def test_replay_refuses_a_delivered_one_by_name_and_replays_the_rest(finance, world, settings):
    settings.ALERTS_OUTBOUND_DRY_RUN = True  # nothing leaves the machine
    response = act(finance, "delivery", "replay", [world["failed"], world["delivered"]])

    assert response.status_code == 302
    replayed, refused = message_texts(response)
    assert replayed == f"Replayed 1 delivery: #{world['failed'].pk}."
    assert refused.startswith(f"Not replayed: #{world['delivered'].pk} alert.triggered to ")
    assert "Only failed or skipped deliveries can be replayed; this one is delivered" in refused
    assert Delivery.objects.get(pk=world["failed"].pk).status == "pending"
    assert Delivery.objects.get(pk=world["delivered"].pk).status == "delivered"
    assert AuditLog.objects.filter(action="delivery.replayed").count() == 1


def test_the_replay_button_comes_back_to_the_delivery(finance, world, settings):
    settings.ALERTS_OUTBOUND_DRY_RUN = True
    page = url("delivery", "change", world["failed"].pk)
    response = finance.post(
        url("delivery"),
        {"action": "replay", "_selected_action": [world["failed"].pk], "_return_to": page},
    )
    assert response.status_code == 302 and response["Location"] == page
    assert Delivery.objects.get(pk=world["failed"].pk).status == "pending"


def test_staff_without_change_on_deliveries_cannot_replay(client, world, settings):
    settings.ALERTS_OUTBOUND_DRY_RUN = True
    looker = UserFactory(is_staff=True)
    looker.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="alerts", codename__in=["view_delivery", "view_alert"]
        )
    )
    client.force_login(looker)

    listing = client.get(url("delivery"))
    assert listing.status_code == 200 and 'value="replay"' not in listing.text
    detail = client.get(url("delivery", "change", world["failed"].pk))
    assert detail.status_code == 200 and 'value="replay"' not in detail.text
    act(client, "delivery", "replay", [world["failed"]])

    assert Delivery.objects.get(pk=world["failed"].pk).status == "failed"
    assert not AuditLog.objects.filter(action="delivery.replayed").exists()


def test_support_staff_see_no_alerts_admin(client, world):
    support = staff_client(client, "support")
    for model in MODELS:
        assert support.get(url(model)).status_code == 403
    act(support, "delivery", "replay", [world["failed"]])
    assert Delivery.objects.get(pk=world["failed"].pk).status == "failed"


# --- Secrets ----------------------------------------------------------------------------------


def test_no_signing_secret_appears_on_any_page(staff, world):
    endpoint = world["endpoint"]
    endpoint_rotate_secret(actor=None, endpoint=endpoint)  # two live secrets now
    secrets = list(WebhookSecret.objects.values_list("secret", flat=True))
    assert len(secrets) == 2 and all(s.startswith("whsec_") for s in secrets)

    pages = [
        staff.get(url("webhookendpoint")),
        staff.get(url("webhookendpoint"), {"q": endpoint.url}),
        staff.get(url("webhookendpoint", "change", endpoint.pk)),
        staff.get(url("delivery", "change", world["failed"].pk)),
        staff.get(url("alert", "change", world["alert"].pk)),
    ]
    for page in pages:
        assert page.status_code == 200
        assert "whsec_" not in page.text
        for secret in secrets:
            assert secret.removeprefix("whsec_")[:8] not in page.text
    detail = pages[2].text
    assert "current" in detail and "previous, signs until" in detail
    with pytest.raises(NoReverseMatch):
        url("webhooksecret")


# --- Plan defaults, through the services -------------------------------------------------------


def rule_form(**fields):
    return {
        "name": "",
        "kind": "threshold",
        "meter": "",
        "basis": "units",
        "levels": "",
        "audience": ["developer", "finance"],
        "enabled": "on",
        **fields,
    }


def test_finance_adds_a_plan_default_rule_copied_onto_subscribers(finance, world, growth, calls):
    response = finance.post(
        url("alertrule", "add"),
        rule_form(plan=growth.plan.pk, name="Half way", meter=calls.pk, levels="500, 250"),
    )

    assert response.status_code == 302
    template = AlertRule.objects.get(name="Half way", plan=growth.plan)
    copy = AlertRule.objects.get(plan_default=template)
    assert copy.customer == world["own"].customer and copy.levels == [250, 500]
    created = AuditLog.objects.get(action="alert_rule.created", object_id=str(template.pk))
    assert created.actor_user == finance.user
    assert "copied" in message_texts(response)[0]


def test_a_refused_plan_default_rule_is_a_form_error(finance, world, growth, calls):
    before = AlertRule.objects.count()
    negative = finance.post(
        url("alertrule", "add"), rule_form(plan=growth.plan.pk, meter=calls.pk, levels="-5")
    )
    assert negative.status_code == 200
    assert "Levels must be more than zero; -5 is not." in negative.text
    nobody = finance.post(
        url("alertrule", "add"),
        rule_form(plan=growth.plan.pk, meter=calls.pk, levels="5", audience=[]),
    )
    assert "Choose at least one persona" in nobody.text
    above_cap = finance.post(
        url("alertrule", "add"), rule_form(plan=growth.plan.pk, meter=calls.pk, levels="25000")
    )
    assert "above the hard cap of 20000" in above_cap.text
    assert AlertRule.objects.count() == before


def test_finance_changes_a_plan_default_and_its_copies_follow(finance, world):
    default, copy = world["default"], world["copy"]
    form = finance.get(url("alertrule", "change", default.pk))
    assert form.status_code == 200 and 'value="80, 100"' in form.text

    response = finance.post(
        url("alertrule", "change", default.pk),
        rule_form(
            name="Included units",
            meter=default.meter_id,
            basis="percent_included",
            levels="90, 100",
            audience=["finance", "executive"],
        ),
    )

    assert response.status_code == 302
    copy.refresh_from_db()
    assert copy.levels == [90, 100] and copy.audience == ["finance", "executive"]
    assert copy.plan_default_id == default.pk  # still attached
    changed = AuditLog.objects.get(action="alert_rule.changed", object_id=str(default.pk))
    assert changed.actor_user == finance.user and changed.after["levels"] == ["90", "100"]


def test_customers_rules_cannot_be_changed_or_removed_in_the_admin(finance, world):
    own = world["own"]
    page = finance.get(url("alertrule", "change", own.pk))
    assert page.status_code == 200 and 'name="levels"' not in page.text
    assert finance.post(url("alertrule", "change", own.pk), rule_form(levels="1")).status_code == (
        403
    )
    assert finance.get(url("alertrule", "delete", own.pk)).status_code == 403

    response = act(finance, "alertrule", "remove_plan_defaults", [own, world["copy"]])
    assert "None of the selected rules is a plan default." in message_texts(response)
    own.refresh_from_db()
    assert own.levels == [5000, 8000]


def test_removing_a_plan_default_takes_its_copies(finance, world):
    default = world["default"]
    confirm = act(finance, "alertrule", "remove_plan_defaults", [default, world["own"]])
    assert confirm.status_code == 200 and "copied onto 1 subscriber</li>" in confirm.text
    assert AlertRule.objects.filter(pk=default.pk).exists()

    act(finance, "alertrule", "remove_plan_defaults", [default], confirmed="1")

    assert not AlertRule.objects.filter(pk__in=[default.pk, world["copy"].pk]).exists()
    assert AlertRule.objects.filter(pk=world["own"].pk).exists()
    removed = AuditLog.objects.get(action="alert_rule.removed", object_id=str(default.pk))
    assert removed.actor_user == finance.user


def test_finance_sets_changes_and_removes_a_plan_default_cap(finance, world, growth, calls):
    cap_default, cap = world["cap_default"], world["cap"]
    refused = finance.post(
        url("plancapdefault", "change", cap_default.pk),
        {"measure": "units", "limit": "-1", "on_exceed": "flag"},
    )
    assert refused.status_code == 200 and "limit must be zero or more." in refused.text

    finance.post(
        url("plancapdefault", "change", cap_default.pk),
        {"measure": "units", "limit": "30000", "on_exceed": "flag"},
    )
    cap.refresh_from_db()
    assert (cap.limit, cap.on_exceed, cap.plan_default_id) == (30000, "flag", cap_default.pk)
    changed = AuditLog.objects.get(action="plan_cap_default.set", actor_user=finance.user)
    assert changed.after["limit"] == "30000"

    act(finance, "plancapdefault", "remove_defaults", [cap_default], confirmed="1")
    assert not PlanCapDefault.objects.exists() and not Cap.objects.exists()

    added = finance.post(
        url("plancapdefault", "add"),
        {"plan": growth.plan.pk, "meter": calls.pk, "measure": "money", "limit": "50"},
    )
    assert added.status_code == 200  # on_exceed missing: the form says so
    finance.post(
        url("plancapdefault", "add"),
        {
            "plan": growth.plan.pk,
            "meter": calls.pk,
            "measure": "money",
            "limit": "50",
            "on_exceed": "reject",
        },
    )
    cap = Cap.objects.get()
    assert (cap.measure, cap.limit, cap.plan_default.plan) == ("money", 50, growth.plan)


# --- Who may do what --------------------------------------------------------------------------


def test_csm_staff_see_signals_and_their_alerts_only(client, world):
    csm = staff_client(client, "csm")
    assert csm.get(url("expansionsignal")).status_code == 200
    assert csm.get(url("expansionsignal", "change", world["signal"].pk)).status_code == 200
    alert = csm.get(url("alert", "change", world["alert"].pk))
    assert alert.status_code == 200 and "HTTP 503" not in alert.text  # no deliveries
    for model in ("alertrule", "plancapdefault", "delivery", "webhookendpoint"):
        assert csm.get(url(model)).status_code == 403


def test_csm_staff_cannot_add_plan_defaults(client, world):
    csm = staff_client(client, "csm")
    assert csm.get(url("alertrule", "add")).status_code == 403
    assert csm.get(url("plancapdefault", "add")).status_code == 403


def test_the_groups_hold_the_alerts_permissions():
    account_services.staff_groups_sync()

    def held(group):
        return set(Group.objects.get(name=group).permissions.values_list("codename", flat=True))

    finance, csm, support = held("finance"), held("csm"), held("support")
    assert {
        "view_alert",
        "view_expansionsignal",
        "view_webhookendpoint",
        "change_delivery",
        "add_alertrule",
        "change_plancapdefault",
    } <= finance
    assert "view_webhooksecret" not in finance | csm | support
    assert {"view_expansionsignal", "view_alert"} <= csm
    assert "change_delivery" not in csm | support


# --- Bounded queries ----------------------------------------------------------------------


def more_rows(model, i, calls, growth):
    customer = CustomerFactory()
    if model == "alertrule":
        subscribe(customer, growth, at=STARTED)
        rule_services.rule_create(actor=None, customer=customer, meter=calls, levels=["7"])
        plan = plan_version(code=f"p{i}", components=[per_unit(calls, "0.01")]).plan
        rule_services.rule_create(actor=None, plan=plan, levels=["9"], basis="money")
    elif model == "plancapdefault":
        plan = plan_version(code=f"p{i}", components=[per_unit(calls, "0.01")]).plan
        rule_services.plan_cap_default_set(actor=None, plan=plan, meter=calls, limit="10")
    elif model == "cap":
        subscribe(customer, growth, at=STARTED)  # a copy of growth's default cap
    else:
        alert = make_alert(customer, meter=calls)
        endpoint = endpoint_create(
            actor=None,
            customer=customer,
            url=f"https://hooks{i}.example.com/",
        )
        contact = ContactFactory(customer=customer)
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(contact=contact)
        make_delivery(alert, endpoint=endpoint, target=endpoint.url)
        ExpansionSignal.objects.create(
            customer=customer,
            kind="fast_growth",
            alert=alert,
            meter=calls,
            currency="USD",
            estimated_revenue_impact_minor=100 * i,
            created_at=timezone.now() - timedelta(minutes=i),
        )
    rule_services.plan_defaults_apply()


@pytest.mark.parametrize("model", MODELS)
def test_each_list_runs_the_same_queries_for_many_rows(
    finance, world, calls, growth, model, django_assert_max_num_queries
):
    def count_queries():
        with CaptureQueriesContext(connection) as captured:
            assert finance.get(url(model)).status_code == 200
        return len(captured)

    more_rows(model, 0, calls, growth)
    few = count_queries()
    for i in range(1, 11):
        more_rows(model, i, calls, growth)
    with django_assert_max_num_queries(few):
        listing = finance.get(url(model))
    assert listing.status_code == 200
    assert few <= 14

"""The Caps & alerts page: caps with what happens past them and this period's usage, alert
rules of every kind, and the htmx forms that set them with errors inline."""

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import AuditLog
from accounts.roles import Role
from alerts import services
from alerts.models import AlertRule, Cap
from alerts.services import rules as rule_services
from tests.accounts.portal.helpers import HTMX, member, row, signed_in
from tests.invoicing.factories import per_unit, plan_version, subscribe
from tests.metering.factories import MeterFactory, api_calls_meter, data_meter, users_meter

pytestmark = pytest.mark.django_db

PAGE = reverse("alerts:guardrails")
CAP_SET = reverse("alerts:cap_set")
RULE_CREATE = reverse("alerts:rule_create")
RULE = {
    "kind": "threshold",
    "meter": "api_call",
    "basis": "units",
    "levels": "800, 500",
    "audience": ["developer", "finance"],
    "name": "",
    "enabled": "on",
}


@pytest.fixture
def calls(db):
    return api_calls_meter()


@pytest.fixture
def owner(client, owner_a):
    return signed_in(client, owner_a)


def page_text(response) -> str:
    return response.content.decode()


# --- What the page shows ----------------------------------------------------------------


def test_the_page_shows_each_cap_with_what_happens_past_it_and_its_usage(owner, customer_a, calls):
    data = data_meter()
    users_meter()
    subscribe(
        customer_a,
        plan_version(components=[per_unit(calls, "0.01"), per_unit(data, "0.5")]),
        at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    services.cap_set(actor=None, customer=customer_a, meter=calls, limit="1000")
    services.cap_set(
        actor=None, customer=customer_a, meter=data, limit="50", measure="money", on_exceed="flag"
    )
    services.authorize(customer=customer_a, meter=calls, quantity="250")

    body = page_text(owner.get(PAGE))

    assert "1,000 calls" in body and "250 of 1,000 calls" in body
    assert "Rejected" in body and "Events past the cap are refused" in body
    assert "50.00 USD of spend" in body and "Accepted, flagged" in body
    assert "0 of 100 GB" in body  # 50 USD at 0.5 per GB, nothing used yet
    assert "Not cappable" in body  # the distinct-users meter
    assert 'id="cap-form-card"' in body and 'id="rule-form-card"' in body


def test_the_page_lists_rules_of_every_kind_in_words(owner, customer_a, calls):
    create = rule_services.rule_create
    create(actor=None, customer=customer_a, meter=calls, levels=["50000", "80000"])
    create(actor=None, customer=customer_a, basis="money", levels=["500"], name="Budget")
    create(actor=None, customer=customer_a, kind="predictive", meter=calls, levels=["90000"])
    create(actor=None, customer=customer_a, kind="velocity", meter=calls, min_volume="100")
    create(
        actor=None, customer=customer_a, kind="anomaly", meter=calls, audience=["developer"],
        enabled=False,
    )  # fmt: skip

    body = page_text(owner.get(PAGE))

    assert "At 50,000 · 80,000 calls" in body
    assert "Budget" in body and "At 500.00 USD of spend" in body
    assert "When passing 90,000 calls within 14 days is at least 80% likely" in body
    assert "is 2 times the previous 28 days" in body and "days under 100 calls ignored" in body
    assert "more than 6 robust deviations" in body
    assert body.count("badge-persona-executive") == 4  # every rule but the anomaly one
    assert body.count('badge-ok">Enabled<') == 4 and body.count(">Paused<") == 1


def test_a_rule_left_above_a_lowered_cap_is_pointed_out(owner, customer_a, calls):
    rule_services.rule_create(actor=None, customer=customer_a, meter=calls, levels=["900"])
    services.cap_set(actor=None, customer=customer_a, meter=calls, limit="500")

    assert "A level is above the hard cap" in page_text(owner.get(PAGE))


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.VIEWER])
def test_members_who_cannot_manage_guardrails_see_them_read_only(client, customer_a, calls, role):
    services.cap_set(actor=None, customer=customer_a, meter=calls, limit="1000")
    rule = rule_services.rule_create(actor=None, customer=customer_a, meter=calls, levels=["5"])
    signed_in(client, member(customer_a, role))

    body = page_text(client.get(PAGE))

    assert "1,000 calls" in body and "At 5 calls" in body
    assert "only owners, admins and finance can change them" in body
    assert 'id="cap-form-card"' not in body and 'id="rule-form-card"' not in body
    assert reverse("alerts:rule_edit", args=[rule.pk]) not in body
    assert client.post(RULE_CREATE, RULE, headers=HTMX).status_code == 403
    assert client.post(CAP_SET, {"meter": "api_call", "limit": "1"}).status_code == 403
    assert client.post(reverse("alerts:rule_delete", args=[rule.pk])).status_code == 403
    assert AlertRule.objects.count() == 1 and Cap.objects.get().limit == 1000


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN, Role.FINANCE])
def test_owners_admins_and_finance_may_add_rules(client, customer_a, calls, role):
    signed_in(client, member(customer_a, role))
    assert client.post(RULE_CREATE, RULE, headers=HTMX).status_code == 200
    assert AlertRule.objects.filter(customer=customer_a).exists()


# --- Rules ------------------------------------------------------------------------------


def test_adding_a_rule_over_htmx_answers_a_fresh_form_the_list_and_a_flash(
    owner, owner_a, customer_a, calls
):
    response = owner.post(RULE_CREATE, RULE, headers=HTMX)

    body = page_text(response)
    assert response.status_code == 200
    assert body.index('id="rule-form-card"') < body.index('id="rules-list"')
    assert 'id="rules-list" class="table-wrap" hx-swap-oob="true"' in body
    assert "At 500 · 800 calls" in body and "added." in body
    rule = AlertRule.objects.get(customer=customer_a)
    assert (rule.levels, rule.audience, rule.enabled) == (
        [500, 800],
        ["developer", "finance"],
        True,
    )
    log = AuditLog.objects.get(action="alert_rule.created")
    assert log.actor_user == owner_a.user and log.customer == customer_a


def test_adding_a_rule_with_a_plain_post_redirects_to_the_rules(owner, customer_a, calls):
    response = owner.post(RULE_CREATE, RULE)

    assert response.status_code == 302 and response.url == PAGE + "#rules"
    assert "added." in page_text(owner.get(response.url))


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"levels": "500, -5"}, "Levels must be more than zero; -5 is not."),
        ({"levels": "500, 500"}, "Level 500 is given twice."),
        ({"levels": "lots"}, "“lots” is not a number."),
        ({"levels": ""}, "A threshold rule needs a level."),
        ({"levels": "1200"}, "1200 is above the hard cap of 1000 calls on api_call"),
        ({"meter": "nope"}, "No active meter has code &#x27;nope&#x27;."),
        ({"meter": "user_active"}, "does not add up over days"),
        ({"meter": ""}, "A rule on total spend measures money"),
        ({"basis": "percent_included", "levels": "2000"}, "levels go up to 1000%"),
        ({"audience": []}, "Choose at least one persona"),
        ({"kind": "predictive", "levels": "900", "confidence": "120"}, "between 0 and 100%"),
        ({"kind": "velocity", "factor": "1"}, "factor must be more than 1"),
        ({"kind": "velocity", "recent_days": "30"}, "longer than recent_days"),
    ],
    ids=[
        "negative",
        "duplicate",
        "not-a-number",
        "no-level",
        "above-cap",
        "unknown-meter",
        "not-countable",
        "total-spend-units",
        "percent-range",
        "no-audience",
        "confidence",
        "factor",
        "windows",
    ],
)
def test_a_bad_rule_is_refused_inline_with_422(owner, customer_a, calls, change, error):
    users_meter()
    services.cap_set(actor=None, customer=customer_a, meter=calls, limit="1000")

    response = owner.post(RULE_CREATE, {**RULE, **change}, headers=HTMX)

    body = page_text(response)
    assert response.status_code == 422
    assert error in body, body
    assert body.lstrip().startswith('<div class="card" id="rule-form-card">')
    assert "<html" not in body and 'class="field-error"' in body
    assert not AlertRule.objects.exists()


def test_a_bad_rule_on_a_plain_post_shows_the_page_with_the_error(owner, calls):
    response = owner.post(RULE_CREATE, {**RULE, "levels": "-1"})

    assert response.status_code == 422
    assert b"<html" in response.content and b"Levels must be more than zero" in response.content


def test_changing_the_kind_refreshes_the_form_with_that_kinds_settings(owner, calls):
    form = owner.get(RULE_CREATE, {**RULE, "kind": "velocity"}, headers=HTMX)

    body = page_text(form)
    assert form.status_code == 200
    assert 'name="factor"' in body and 'name="baseline_days"' in body
    assert 'name="levels"' not in body and 'name="basis"' not in body
    assert '<option value="velocity" selected>' in body
    assert 'value="developer" id="rule-audience_0" checked' in body
    assert (
        'value="executive"' in body and 'value="executive" id="rule-audience_3" checked' not in body
    )


def test_editing_a_rule_fills_the_form_and_saves_with_an_audit_row(owner, customer_a, calls):
    rule = rule_services.rule_create(
        actor=None, customer=customer_a, kind="predictive", meter=calls, levels=["900"]
    )
    url = reverse("alerts:rule_edit", args=[rule.pk])

    form = page_text(owner.get(url, headers=HTMX))
    saved = owner.post(
        url, {**RULE, "kind": "predictive", "levels": "950", "confidence": "90", "within_days": 7},
        headers=HTMX,
    )  # fmt: skip

    assert 'value="900"' in form and 'value="80"' in form and 'value="14"' in form
    assert saved.status_code == 200 and "saved." in page_text(saved)
    rule.refresh_from_db()
    assert (rule.levels, str(rule.confidence), rule.within_days) == ([950], "0.900", 7)
    log = AuditLog.objects.get(action="alert_rule.changed")
    assert log.after["levels"] == ["950"] and log.after["confidence"] == "0.9"


def test_editing_a_plan_defaults_copy_makes_it_the_customers_own(owner, customer_a, calls):
    version = plan_version(components=[per_unit(calls, "0.01", included="1000")])
    subscribe(customer_a, version, at=datetime(2026, 1, 1, tzinfo=UTC))
    template = rule_services.rule_create(
        actor=None, plan=version.plan, meter=calls, basis="percent_included", levels=["80"]
    )
    copy = AlertRule.objects.get(plan_default=template)
    assert "From your plan" in page_text(owner.get(PAGE))

    owner.post(
        reverse("alerts:rule_edit", args=[copy.pk]),
        {**RULE, "basis": "percent_included", "levels": "90"},
        headers=HTMX,
    )

    copy.refresh_from_db()
    assert (copy.plan_default, copy.levels) == (None, [90])


def test_an_invalid_edit_leaves_the_rule_as_it_was(owner, customer_a, calls):
    rule = rule_services.rule_create(actor=None, customer=customer_a, meter=calls, levels=["5"])
    before = row(AlertRule, rule.pk)

    response = owner.post(
        reverse("alerts:rule_edit", args=[rule.pk]), {**RULE, "levels": "0"}, headers=HTMX
    )

    assert response.status_code == 422 and b"more than zero" in response.content
    assert row(AlertRule, rule.pk) == before


def test_deleting_a_rule_answers_the_list_without_it(owner, customer_a, calls):
    rule = rule_services.rule_create(actor=None, customer=customer_a, meter=calls, levels=["5"])

    response = owner.post(reverse("alerts:rule_delete", args=[rule.pk]), headers=HTMX)

    body = page_text(response)
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="rules-list" class="table-wrap">')
    assert "No alert rules yet." in body and "deleted." in body
    assert not AlertRule.objects.exists()
    assert AuditLog.objects.filter(action="alert_rule.removed").exists()


def test_another_customers_rule_is_not_found(owner, customer_b, calls):
    theirs = rule_services.rule_create(actor=None, customer=customer_b, meter=calls, levels=["5"])

    for name in ("alerts:rule_edit", "alerts:rule_delete"):
        url = reverse(name, args=[theirs.pk])
        assert owner.get(url).status_code == 404
        assert owner.post(url, RULE).status_code == 404
    assert AlertRule.objects.get().levels == [5]


# --- Caps -------------------------------------------------------------------------------


def test_setting_a_cap_over_htmx_shows_it_with_its_choice_past_the_cap(
    owner, owner_a, customer_a, calls
):
    response = owner.post(
        CAP_SET,
        {"meter": "api_call", "measure": "units", "limit": "20000", "on_exceed": "flag"},
        headers=HTMX,
    )

    body = page_text(response)
    assert response.status_code == 200
    assert 'id="caps-list" class="table-wrap" hx-swap-oob="true"' in body
    assert "API calls is capped at 20,000 calls per billing period." in body
    assert "Accepted, flagged" in body
    cap = Cap.objects.get(customer=customer_a)
    assert (cap.limit, cap.on_exceed, cap.measure) == (20000, "flag", "units")
    assert AuditLog.objects.get(action="cap.set").actor_user == owner_a.user


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"limit": "-5"}, "limit must be zero or more."),
        ({"limit": "lots"}, "limit must be a number"),
        ({"meter": "nope"}, "No active meter has code"),
        ({"meter": "user_active"}, "only count and sum meters can be capped"),
        ({"measure": "money"}, "does not price api_call"),
        ({"on_exceed": "shrug"}, "Select a valid choice."),
    ],
    ids=["negative", "not-a-number", "unknown-meter", "not-cappable", "unpriced", "on-exceed"],
)
def test_a_bad_cap_is_refused_inline_with_422(owner, calls, change, error):
    users_meter()
    data = {"meter": "api_call", "measure": "units", "limit": "10", "on_exceed": "reject"}

    response = owner.post(CAP_SET, {**data, **change}, headers=HTMX)

    assert response.status_code == 422
    assert error in page_text(response)
    assert page_text(response).lstrip().startswith('<div class="card" id="cap-form-card">')
    assert not Cap.objects.exists()


def test_change_opens_the_cap_form_filled_in(owner, customer_a, calls):
    services.cap_set(actor=None, customer=customer_a, meter=calls, limit="750", on_exceed="flag")

    form = page_text(owner.get(CAP_SET, {"meter": "api_call"}, headers=HTMX))
    page = page_text(owner.get(PAGE, {"cap": "api_call"}))

    for body in (form, page):
        assert "Change the cap on API calls" in body and 'value="750"' in body
        assert 'value="flag" id="cap-on_exceed_1" required checked' in body


def test_removing_a_cap_answers_the_caps_and_flags_rules_that_needed_it(owner, customer_a, calls):
    cap = services.cap_set(actor=None, customer=customer_a, meter=calls, limit="1000")
    rule_services.rule_create(
        actor=None, customer=customer_a, meter=calls, basis="percent_cap", levels=["80"]
    )

    response = owner.post(reverse("alerts:cap_remove", args=[cap.pk]), headers=HTMX)

    body = page_text(response)
    assert body.lstrip().startswith('<div id="caps-list" class="table-wrap">')
    assert "The cap on API calls is removed." in body
    assert "No hard cap on this meter any more" in body
    assert not Cap.objects.exists()


def test_another_customers_cap_cannot_be_removed(owner, customer_b, calls):
    theirs = services.cap_set(actor=None, customer=customer_b, meter=calls, limit="1")
    assert owner.post(reverse("alerts:cap_remove", args=[theirs.pk])).status_code == 404
    assert Cap.objects.filter(pk=theirs.pk).exists()


# --- Queries ----------------------------------------------------------------------------


def test_the_page_costs_the_same_queries_for_few_or_many_caps_and_rules(
    owner, customer_a, django_assert_max_num_queries
):
    def add(count: int, start: int) -> None:
        for i in range(start, start + count):
            meter = MeterFactory(code=f"m{i}", name=f"Meter {i}")
            services.cap_set(actor=None, customer=customer_a, meter=meter, limit="100")
            services.authorize(customer=customer_a, meter=meter, quantity="1")  # opens its window
            rule_services.rule_create(actor=None, customer=customer_a, meter=meter, levels=["50"])
            rule_services.rule_create(actor=None, customer=customer_a, kind="anomaly", meter=meter)

    add(1, 0)
    owner.get(PAGE)  # warm the session
    with CaptureQueriesContext(connection) as few:
        assert owner.get(PAGE).status_code == 200
    add(12, 1)
    with django_assert_max_num_queries(len(few)):
        body = page_text(owner.get(PAGE))
    assert body.count("1 of 100 units") == 13

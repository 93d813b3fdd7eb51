"""Alert rules and plan defaults: what a rule may say, the audit trail of every change, and
the operator's defaults per plan copied onto (and kept in line with) its subscribers."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.errors import InvalidInput
from accounts.models import AuditLog, Persona
from alerts import services
from alerts.models import AlertRule, Cap, PlanCapDefault
from alerts.services import cap_set
from alerts.services.rules import DEFAULTS
from invoicing import services as invoicing
from tests.accounts.factories import CustomerFactory, UserFactory
from tests.invoicing.factories import per_unit, plan_version, subscribe
from tests.metering.factories import MeterFactory, api_calls_meter, data_meter, users_meter

pytestmark = pytest.mark.django_db

STARTED = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def calls(db):
    return api_calls_meter()


@pytest.fixture
def person(db):
    return UserFactory(email="fran@alpha.example.com")


def create(customer, **fields):
    return services.rule_create(actor=None, customer=customer, **fields)


def refused(code: str, field: str | None, call, *args, **kwargs) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        call(*args, **kwargs)
    assert (caught.value.code, caught.value.field) == (code, field), caught.value.message
    return caught.value


# --- What a rule may say ----------------------------------------------------------------


def test_a_threshold_rule_keeps_its_levels_ascending_and_nothing_its_kind_does_not_read(
    customer_a, calls
):
    rule = create(
        customer_a,
        meter=calls,
        levels=["80000", 50000, "65000.5"],
        factor="3",
        sensitivity="4",
        within_days=30,
    )

    rule.refresh_from_db()
    assert rule.levels == [Decimal(50000), Decimal("65000.5"), Decimal(80000)]
    assert (rule.kind, rule.basis, rule.enabled) == ("threshold", "units", True)
    assert rule.audience == list(Persona.values)
    assert [getattr(rule, f) for f in DEFAULTS] == [None] * len(DEFAULTS)


def test_a_meter_can_be_given_by_its_code(customer_a, calls):
    assert create(customer_a, meter="api_call", levels=["5"]).meter == calls


def test_each_kind_gets_its_defaults(customer_a, calls):
    predictive = create(customer_a, kind="predictive", meter=calls, levels=["50000"])
    velocity = create(customer_a, kind="velocity", meter=calls, levels=["1"])
    anomaly = create(customer_a, kind="anomaly", meter=calls, audience=["developer"])

    assert (predictive.confidence, predictive.within_days) == (Decimal("0.8"), 14)
    assert (velocity.factor, velocity.recent_days, velocity.baseline_days) == (2, 7, 28)
    assert velocity.levels == [] and velocity.min_volume == 0 and velocity.confidence is None
    assert (anomaly.sensitivity, anomaly.min_volume, anomaly.audience) == (6, 0, ["developer"])


def test_total_spend_rules_measure_money(customer_a):
    rule = create(customer_a, meter=None, basis="money", levels=["1000", "2000"])
    commitment = create(customer_a, basis="percent_commitment", levels=["80", "100"])
    assert rule.meter is None and commitment.basis == "percent_commitment"


def test_a_spend_level_on_a_meter_the_plan_does_not_price_is_allowed(customer_a, calls):
    # It never fires; refusing it would make the rule depend on today's plan.
    assert create(customer_a, meter=calls, basis="money", levels=["50"]).pk


def test_a_units_rule_below_the_hard_cap_is_fine_and_the_cap_itself_is_a_level(customer_a, calls):
    cap_set(actor=None, customer=customer_a, meter=calls, limit="1000")
    assert create(customer_a, meter=calls, levels=["800", "1000"]).levels == [800, 1000]
    assert create(customer_a, meter=calls, basis="percent_cap", levels=["80", "100"]).pk


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"kind": "sometimes"}, "invalid_choice", "kind"),
        ({"basis": "vibes"}, "invalid_choice", "basis"),
        ({"meter": "nope"}, "unknown_meter", "meter"),
        ({"meter": "retired"}, "unknown_meter", "meter"),
        ({"levels": []}, "levels_required", "levels"),
        ({"levels": ["10", "-5"]}, "level_not_positive", "levels[1]"),
        ({"levels": ["0"]}, "level_not_positive", "levels[0]"),
        ({"levels": [10.5]}, "invalid", "levels[0]"),
        ({"levels": ["ten"]}, "invalid", "levels[0]"),
        ({"levels": "10"}, "invalid", "levels"),
        ({"levels": ["1.0000000000001"]}, "invalid", "levels[0]"),
        ({"levels": ["10", "20", "10.0"]}, "levels_duplicate", "levels[2]"),
        ({"levels": [str(n) for n in range(1, 12)]}, "too_many_levels", "levels"),
        ({"basis": "percent_included", "levels": ["1001"]}, "level_out_of_range", "levels[0]"),
        (
            {"basis": "percent_commitment", "levels": ["50", "2000"]},
            "level_out_of_range",
            "levels[1]",
        ),
        ({"basis": "percent_cap", "levels": ["50"]}, "no_hard_cap", "basis"),
        ({"meter": None, "basis": "units"}, "meter_required", "meter"),
        ({"meter": None, "basis": "percent_included"}, "meter_required", "meter"),
        ({"meter": "user_active"}, "meter_not_countable", "meter"),
        ({"kind": "velocity", "meter": None}, "meter_required", "meter"),
        ({"kind": "predictive", "meter": None, "basis": "money"}, "meter_required", "meter"),
        ({"kind": "anomaly", "meter": "user_active"}, "meter_not_countable", "meter"),
        ({"kind": "predictive", "meter": "user_active"}, "meter_not_countable", "meter"),
        ({"kind": "velocity", "basis": "money"}, "basis_not_for_kind", "basis"),
        ({"kind": "predictive", "levels": ["1", "2"]}, "one_level_only", "levels"),
        ({"kind": "predictive", "confidence": "1"}, "out_of_range", "confidence"),
        ({"kind": "predictive", "confidence": "0"}, "out_of_range", "confidence"),
        ({"kind": "predictive", "confidence": "0.8125"}, "invalid", "confidence"),
        ({"kind": "predictive", "within_days": 0}, "out_of_range", "within_days"),
        ({"kind": "predictive", "within_days": 91}, "out_of_range", "within_days"),
        ({"kind": "predictive", "within_days": "two weeks"}, "invalid", "within_days"),
        ({"kind": "velocity", "factor": "1"}, "out_of_range", "factor"),
        ({"kind": "velocity", "factor": "0.5"}, "out_of_range", "factor"),
        ({"kind": "velocity", "recent_days": 0}, "out_of_range", "recent_days"),
        ({"kind": "velocity", "recent_days": 28}, "out_of_range", "baseline_days"),
        ({"kind": "velocity", "baseline_days": 91}, "out_of_range", "baseline_days"),
        ({"kind": "velocity", "min_volume": "-1"}, "out_of_range", "min_volume"),
        ({"kind": "anomaly", "sensitivity": "0"}, "out_of_range", "sensitivity"),
        ({"kind": "anomaly", "sensitivity": "-2"}, "out_of_range", "sensitivity"),
        ({"audience": []}, "audience_empty", "audience"),
        ({"audience": ["developer", "astronaut"]}, "invalid_choice", "audience"),
        ({"enabled": "yes"}, "invalid", "enabled"),
        ({"name": "x" * 121}, "invalid", "name"),
        ({"colour": "red"}, "unknown_field", "colour"),
    ],
)
def test_a_bad_rule_is_refused_by_code_and_field(customer_a, calls, fields, code, field):
    users_meter()
    MeterFactory(code="retired", is_active=False)
    fields = {"meter": calls, "levels": ["100"], **fields}

    refused(code, field, create, customer_a, **fields)

    assert not AlertRule.objects.exists()
    assert not AuditLog.objects.filter(action="alert_rule.created").exists()


def test_a_soft_level_above_the_hard_cap_is_refused(customer_a, calls):
    cap_set(actor=None, customer=customer_a, meter=calls, limit="1000")

    error = refused(
        "level_above_cap", "levels[1]", create, customer_a, meter=calls, levels=["800", "1200"]
    )
    assert "above the hard cap of 1000 calls" in error.message
    refused("level_above_cap", "levels[0]", create, customer_a, kind="predictive",
            meter=calls, levels=["1001"])  # fmt: skip
    refused("level_out_of_range", "levels[0]", create, customer_a, meter=calls,
            basis="percent_cap", levels=["101"])  # fmt: skip


def test_a_money_cap_bounds_spend_levels_not_unit_levels(customer_a, calls):
    subscribe(customer_a, plan_version(components=[per_unit(calls, "0.01")]), at=STARTED)
    cap_set(actor=None, customer=customer_a, meter=calls, limit="500", measure="money")

    refused("level_above_cap", "levels[0]", create, customer_a, meter=calls, basis="money",
            levels=["600"])  # fmt: skip
    assert create(customer_a, meter=calls, levels=["600000"]).pk


def test_a_rule_belongs_to_a_customer_or_a_plan(customer_a, calls):
    plan = plan_version(components=[per_unit(calls, "0.01")]).plan
    refused("customer_or_plan", "customer", services.rule_create, actor=None, levels=["1"],
            meter=calls)  # fmt: skip
    refused("customer_or_plan", "customer", services.rule_create, actor=None, levels=["1"],
            meter=calls, customer=customer_a, plan=plan)  # fmt: skip


def test_changing_the_kind_resets_what_the_old_kind_read(customer_a, calls):
    rule = create(customer_a, kind="velocity", meter=calls, factor="3")

    rule = services.rule_update(actor=None, rule=rule, kind="predictive", levels=["900"])

    rule.refresh_from_db()
    assert (rule.factor, rule.recent_days, rule.baseline_days, rule.min_volume) == (None,) * 4
    assert (rule.levels, rule.confidence, rule.within_days) == ([900], Decimal("0.8"), 14)


def test_an_update_is_checked_like_a_creation(customer_a, calls):
    cap_set(actor=None, customer=customer_a, meter=calls, limit="1000")
    rule = create(customer_a, meter=calls, levels=["500"])

    refused("level_above_cap", "levels[0]", services.rule_update, actor=None, rule=rule,
            levels=["5000"])  # fmt: skip
    refused("unknown_field", "customer", services.rule_update, actor=None, rule=rule,
            customer=None)  # fmt: skip
    rule.refresh_from_db()
    assert rule.levels == [500]


# --- The audit trail --------------------------------------------------------------------


def test_create_change_and_removal_are_audited_with_who_before_and_after(customer_a, calls, person):
    rule = services.rule_create(
        actor=person, customer=customer_a, meter=calls, levels=["100", "50"], name="Calls"
    )
    services.rule_update(actor=person, rule=rule, levels=["50", "75"], enabled=False)
    services.rule_update(actor=person, rule=rule, levels=["75", "50"])  # no change: no row
    services.rule_delete(actor=person, rule=rule)

    created, changed, removed = AuditLog.objects.filter(object_type="alerts.alertrule").order_by(
        "id"
    )
    assert [created.action, changed.action, removed.action] == [
        "alert_rule.created",
        "alert_rule.changed",
        "alert_rule.removed",
    ]
    assert {log.actor_user for log in (created, changed, removed)} == {person}
    assert {log.customer for log in (created, changed, removed)} == {customer_a}
    assert created.after["levels"] == ["50", "100"] and created.after["meter"] == "api_call"
    assert changed.before == {"levels": ["50", "100"], "enabled": True}
    assert changed.after == {"levels": ["50", "75"], "enabled": False}
    assert removed.before["name"] == "Calls" and removed.object_id == str(rule.pk)
    assert not AlertRule.objects.exists()


# --- Plan defaults: rules ---------------------------------------------------------------


@pytest.fixture
def growth(calls):
    return plan_version(code="growth", components=[per_unit(calls, "0.01", included="1000")])


@pytest.fixture
def scale(calls):
    return plan_version(code="scale", components=[per_unit(calls, "0.005")])


@pytest.fixture
def subscribers(growth):
    """Three customers on growth; one more on no plan at all."""
    customers = [CustomerFactory(external_id=f"sub{i}") for i in range(3)]
    for customer in customers:
        subscribe(customer, growth, at=STARTED)
    CustomerFactory(external_id="nobody")
    return customers


def template(plan, **fields):
    fields = {"meter": "api_call", "basis": "percent_included", "levels": ["80", "100"], **fields}
    return services.rule_create(actor=None, plan=plan, **fields)


def copies_of(rule):
    return AlertRule.objects.filter(plan_default=rule).order_by("customer__external_id")


def test_a_plan_default_is_copied_onto_each_current_subscriber(growth, subscribers):
    rule = template(growth.plan, name="Included units", audience=["finance"])

    copies = copies_of(rule)
    assert [c.customer for c in copies] == subscribers
    first = copies[0]
    assert (first.plan, first.meter.code, first.basis, first.name) == (
        None,
        "api_call",
        "percent_included",
        "Included units",
    )
    assert first.levels == [80, 100] and first.audience == ["finance"]
    created = AuditLog.objects.filter(action="alert_rule.created", customer=subscribers[0])
    assert created.get().after["plan_default"] == rule.pk


def test_applying_twice_changes_nothing(growth, scale, subscribers, calls):
    template(growth.plan)
    services.plan_cap_default_set(actor=None, plan=growth.plan, meter=calls, limit="5000")
    before = (AlertRule.objects.count(), Cap.objects.count(), AuditLog.objects.count())

    again = services.plan_defaults_apply()
    once_more = services.plan_defaults_apply(plan=growth.plan)

    assert again.changed == once_more.changed == 0
    assert (AlertRule.objects.count(), Cap.objects.count(), AuditLog.objects.count()) == before


def test_a_new_subscriber_gets_the_defaults_on_the_next_apply(growth, subscribers):
    rule = template(growth.plan)
    newcomer = CustomerFactory(external_id="newcomer")
    subscribe(newcomer, growth, at=STARTED)

    applied = services.plan_defaults_apply()

    assert applied.rules_created == 1
    assert copies_of(rule).filter(customer=newcomer).exists()


def test_a_subscription_not_started_yet_does_not_count(growth, subscribers):
    later = CustomerFactory(external_id="later")
    subscribe(later, growth, at=timezone.now() + timedelta(days=3))
    rule = template(growth.plan)
    assert not copies_of(rule).filter(customer=later).exists()


def test_changing_a_default_updates_the_copies_still_attached(growth, subscribers, person):
    rule = template(growth.plan)
    services.rule_update(actor=None, rule=rule, levels=["50", "90"], enabled=False)

    assert {tuple(c.levels) for c in copies_of(rule)} == {(50, 90)}
    assert not copies_of(rule).filter(enabled=True).exists()
    changes = AuditLog.objects.filter(action="alert_rule.changed", customer__isnull=False)
    assert changes.count() == 3
    assert changes.first().after == {"levels": ["50", "90"], "enabled": False}


def test_a_customers_own_edit_detaches_its_copy_for_good(growth, subscribers, person):
    rule = template(growth.plan)
    mine = copies_of(rule).get(customer=subscribers[0])

    services.rule_update(actor=person, rule=mine, levels=["95"])
    services.rule_update(actor=None, rule=rule, levels=["60"])
    services.plan_defaults_apply()

    mine.refresh_from_db()
    assert (mine.plan_default, mine.levels) == (None, [95])
    assert AlertRule.objects.filter(customer=subscribers[0]).count() == 1
    assert {tuple(c.levels) for c in copies_of(rule)} == {(60,)}


def test_a_copy_the_customer_removed_is_not_copied_again(growth, subscribers, person):
    rule = template(growth.plan)
    services.rule_delete(actor=person, rule=copies_of(rule).get(customer=subscribers[1]))

    assert services.plan_defaults_apply().changed == 0
    assert not AlertRule.objects.filter(customer=subscribers[1]).exists()


def test_removing_a_default_removes_its_attached_copies_only(growth, subscribers, person):
    rule = template(growth.plan)
    kept = copies_of(rule).get(customer=subscribers[2])
    services.rule_update(actor=person, rule=kept, name="Mine now")

    services.rule_delete(actor=None, rule=rule)

    assert list(AlertRule.objects.all()) == [kept]
    removed = AuditLog.objects.filter(action="alert_rule.removed")
    assert sorted(log.customer_id or 0 for log in removed) == sorted(
        [0, subscribers[0].pk, subscribers[1].pk]
    )


def test_a_customer_who_changes_plan_loses_the_old_copies_and_gets_the_new(
    growth, scale, subscribers
):
    old = template(growth.plan)
    new = template(scale.plan, basis="units", levels=["100000"])
    mover = subscribers[0]

    invoicing.subscription_change_plan(
        actor=None, subscription=mover.subscriptions.get(), plan_version=scale
    )
    applied = services.plan_defaults_apply()

    assert (applied.rules_removed, applied.rules_created) == (1, 1)
    assert not copies_of(old).filter(customer=mover).exists()
    assert copies_of(new).get().customer == mover


def test_applying_costs_the_same_queries_for_few_or_many_subscribers(growth, calls):
    template(growth.plan)
    template(growth.plan, kind="velocity", basis="units", levels=[])

    def queries_to_apply(count: int) -> int:
        for _ in range(count):
            subscribe(CustomerFactory(), growth, at=STARTED)
        with CaptureQueriesContext(connection) as captured:
            services.plan_defaults_apply()
        return len(captured)

    assert queries_to_apply(2) == queries_to_apply(20)


def test_a_plan_default_is_checked_against_the_plans_cap_default(growth, calls):
    refused("no_hard_cap", "basis", template, growth.plan, basis="percent_cap")
    services.plan_cap_default_set(actor=None, plan=growth.plan, meter=calls, limit="5000")

    refused("level_above_cap", "levels[0]", template, growth.plan, basis="units",
            levels=["6000"])  # fmt: skip
    assert template(growth.plan, basis="percent_cap").pk


# --- Plan defaults: caps ----------------------------------------------------------------


def test_a_cap_default_caps_subscribers_without_their_own(growth, subscribers, calls, person):
    cap_set(actor=person, customer=subscribers[1], meter=calls, limit="42")

    default = services.plan_cap_default_set(
        actor=person, plan=growth.plan, meter=calls, limit="5000", on_exceed="flag"
    )

    caps = {c.customer: c for c in Cap.objects.all()}
    assert (caps[subscribers[0]].limit, caps[subscribers[0]].on_exceed) == (5000, "flag")
    assert caps[subscribers[0]].plan_default == default
    assert (caps[subscribers[1]].limit, caps[subscribers[1]].plan_default) == (42, None)
    assert caps[subscribers[2]].plan_default == default
    log = AuditLog.objects.get(action="plan_cap_default.set")
    assert log.actor_user == person and log.after["limit"] == "5000" and log.customer is None


def test_changing_a_cap_default_moves_attached_caps_and_their_windows(growth, subscribers, calls):
    services.plan_cap_default_set(actor=None, plan=growth.plan, meter=calls, limit="5000")
    services_authorize_everyone(subscribers, calls)

    services.plan_cap_default_set(actor=None, plan=growth.plan, meter=calls, limit="3000")

    assert {c.limit for c in Cap.objects.all()} == {3000}
    assert {w.limit for c in Cap.objects.all() for w in c.windows.all()} == {3000}


def services_authorize_everyone(customers, meter):
    from alerts.services import authorize

    for customer in customers:
        assert authorize(customer=customer, meter=meter, quantity="1").allowed


def test_a_customers_own_cap_change_detaches_it(growth, subscribers, calls, person):
    services.plan_cap_default_set(actor=None, plan=growth.plan, meter=calls, limit="5000")
    cap_set(actor=person, customer=subscribers[0], meter=calls, limit="100")

    services.plan_cap_default_set(actor=None, plan=growth.plan, meter=calls, limit="7000")

    mine = Cap.objects.get(customer=subscribers[0])
    assert (mine.limit, mine.plan_default) == (100, None)


def test_a_default_cap_a_customer_removed_stays_removed(growth, subscribers, calls, person):
    services.plan_cap_default_set(actor=None, plan=growth.plan, meter=calls, limit="5000")
    from alerts.services import cap_remove

    cap_remove(actor=person, cap=Cap.objects.get(customer=subscribers[0]))
    services.plan_cap_default_set(actor=None, plan=growth.plan, meter=calls, limit="6000")
    services.plan_defaults_apply()

    assert not Cap.objects.filter(customer=subscribers[0]).exists()
    assert set(Cap.objects.values_list("limit", flat=True)) == {6000}  # the others follow


def test_a_money_cap_default_needs_a_plan_that_prices_the_meter(growth, calls):
    data = data_meter()
    refused("meter_not_priced", "measure", services.plan_cap_default_set, actor=None,
            plan=growth.plan, meter=data, limit="10", measure="money")  # fmt: skip
    refused("meter_not_cappable", "meter", services.plan_cap_default_set, actor=None,
            plan=growth.plan, meter=users_meter(), limit="10")  # fmt: skip
    refused("invalid", "limit", services.plan_cap_default_set, actor=None,
            plan=growth.plan, meter=calls, limit="-1")  # fmt: skip
    assert (
        services.plan_cap_default_set(
            actor=None, plan=growth.plan, meter=calls, limit="250", measure="money"
        ).measure
        == "money"
    )


def test_removing_a_cap_default_removes_the_caps_copied_from_it(growth, subscribers, calls):
    default = services.plan_cap_default_set(actor=None, plan=growth.plan, meter=calls, limit="5000")
    own = cap_set(actor=UserFactory(), customer=subscribers[0], meter=calls, limit="9")

    services.plan_cap_default_remove(actor=None, default=default)

    assert list(Cap.objects.all()) == [own]
    assert not PlanCapDefault.objects.exists()
    assert AuditLog.objects.filter(action="plan_cap_default.removed").exists()
    assert AuditLog.objects.filter(action="cap.removed").count() == 2


def test_a_customer_leaving_the_plan_loses_its_default_cap(growth, scale, subscribers, calls):
    services.plan_cap_default_set(actor=None, plan=growth.plan, meter=calls, limit="5000")
    invoicing.subscription_change_plan(
        actor=None, subscription=subscribers[0].subscriptions.get(), plan_version=scale
    )

    applied = services.plan_defaults_apply()

    assert applied.caps_removed == 1
    assert not Cap.objects.filter(customer=subscribers[0]).exists()
    assert Cap.objects.count() == 2

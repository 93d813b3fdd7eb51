"""Alert rules and plan cap defaults over the API: customer keys keep their own rules,
operators set rules for any customer and defaults for a plan's subscribers."""

from datetime import UTC, datetime

import pytest

from accounts.models import ApiKey, AuditLog
from accounts.scopes import ALL_SCOPES
from alerts.models import AlertRule, Cap, PlanCapDefault
from tests.accounts.api.support import api, assert_error
from tests.accounts.factories import make_api_key
from tests.invoicing.factories import per_unit, plan_version, subscribe
from tests.metering.factories import api_calls_meter, users_meter

pytestmark = pytest.mark.django_db

RULES, DEFAULTS = "/api/v1/alert-rules", "/api/v1/plan-cap-defaults"


@pytest.fixture
def calls(db):
    return api_calls_meter()


@pytest.fixture
def operator(operator_token):
    return api(operator_token)


@pytest.fixture
def alpha(customer_a_token):
    return api(customer_a_token)


@pytest.fixture
def growth(calls):
    return plan_version(code="growth", components=[per_unit(calls, "0.01", included="1000")])


def test_a_customer_key_creates_reads_changes_and_removes_its_own_rule(alpha, customer_a, calls):
    created = alpha.post(
        RULES,
        {"meter": "api_call", "levels": ["80000", 50000], "audience": ["developer", "finance"]},
        format="json",
    )

    assert created.status_code == 201, created.content
    body = created.json()
    assert body["customer"] == "alpha" and body["plan"] is None and body["plan_default"] is None
    assert (body["kind"], body["basis"], body["levels"]) == (
        "threshold",
        "units",
        ["50000", "80000"],
    )
    assert body["audience"] == ["developer", "finance"] and body["enabled"] is True
    assert body["factor"] is None and body["confidence"] is None
    detail = f"{RULES}/{body['id']}"
    assert alpha.get(detail).json() == body
    assert alpha.get(RULES).json()["results"] == [body]

    changed = alpha.patch(
        detail, {"kind": "predictive", "levels": ["90000"], "within_days": 30}, format="json"
    )
    assert changed.status_code == 200, changed.content
    assert (changed.json()["kind"], changed.json()["levels"]) == ("predictive", ["90000"])
    assert (changed.json()["confidence"], changed.json()["within_days"]) == ("0.8", 30)

    assert alpha.delete(detail).status_code == 204
    assert_error(alpha.get(detail), 404, "not_found")
    actions = list(
        AuditLog.objects.filter(action__startswith="alert_rule.")
        .order_by("id")
        .values_list("action", "actor_api_key__name")
    )
    assert actions == [
        ("alert_rule.created", "test key"),
        ("alert_rule.changed", "test key"),
        ("alert_rule.removed", "test key"),
    ]


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"meter": "nope", "levels": ["1"]}, "does_not_exist", "meter"),
        ({"meter": "api_call", "levels": ["-5"]}, "level_not_positive", "levels[0]"),
        ({"meter": "api_call", "levels": [1.5]}, "invalid", "levels[0]"),
        ({"meter": "api_call", "levels": ["5", "5"]}, "levels_duplicate", "levels[1]"),
        ({"meter": "api_call", "levels": ["10"], "kind": "often"}, "invalid_choice", "kind"),
        (
            {"meter": "api_call", "levels": ["10"], "audience": ["astronaut"]},
            "invalid_choice",
            "audience.0",
        ),
        ({"meter": "user_active", "levels": ["10"]}, "meter_not_countable", "meter"),
        ({"meter": None, "levels": ["10"]}, "meter_required", "meter"),
        ({"meter": "api_call", "levels": ["1200"]}, "level_above_cap", "levels[0]"),
        ({"meter": "api_call", "levels": ["10"], "colour": "red"}, "unknown_field", "colour"),
        (
            {"meter": "api_call", "kind": "velocity", "factor": "1", "levels": []},
            "out_of_range",
            "factor",
        ),
    ],
)
def test_bad_rules_are_refused_by_code_and_field(alpha, customer_a, calls, body, code, field):
    users_meter()
    Cap.objects.create(customer=customer_a, meter=calls, limit=1000)

    assert_error(alpha.post(RULES, body, format="json"), 400, code, field=field)
    assert not AlertRule.objects.exists()


def test_a_change_is_checked_and_a_bad_one_leaves_the_rule_as_it_was(alpha, customer_a, calls):
    rule = AlertRule.objects.create(
        customer=customer_a, kind="threshold", meter=calls, levels=[100]
    )

    response = alpha.patch(f"{RULES}/{rule.pk}", {"levels": ["0"]}, format="json")

    assert_error(response, 400, "level_not_positive", field="levels[0]")
    assert_error(
        alpha.patch(f"{RULES}/{rule.pk}", {"customer": "beta"}, format="json"),
        400,
        "unknown_field",
        field="customer",
    )
    rule.refresh_from_db()
    assert rule.levels == [100]


def test_another_customers_rule_is_a_404_and_stays_as_it_was(alpha, customer_b, calls):
    theirs = AlertRule.objects.create(
        customer=customer_b, kind="threshold", meter=calls, levels=[10]
    )

    for method in ("get", "patch", "delete"):
        response = getattr(alpha, method)(f"{RULES}/{theirs.pk}", {"levels": ["1"]}, format="json")
        assert_error(response, 404, "not_found")
    assert AlertRule.objects.get().levels == [10]
    assert alpha.get(RULES).json()["results"] == []


def test_reading_needs_usage_read_and_writing_caps_write(customer_a, calls):
    _, reader = make_api_key(customer=customer_a, scopes=["usage:read"])
    _, writer = make_api_key(customer=customer_a, scopes=["caps:write"])
    body = {"meter": "api_call", "levels": ["1"]}

    assert_error(api(reader).post(RULES, body, format="json"), 403, "insufficient_scope")
    assert api(writer).post(RULES, body, format="json").status_code == 201
    assert_error(api(writer).get(RULES), 403, "insufficient_scope")
    assert len(api(reader).get(RULES).json()["results"]) == 1


def test_an_operator_names_the_customer_or_a_plan(operator, customer_a, customer_b, calls, growth):
    subscribe(customer_b, growth, at=datetime(2026, 1, 1, tzinfo=UTC))
    body = {"meter": "api_call", "basis": "percent_included", "levels": ["80"]}

    assert_error(operator.post(RULES, body, format="json"), 400, "required", field="customer")
    assert_error(
        operator.post(RULES, {**body, "customer": "alpha", "plan": "growth"}, format="json"),
        400,
        "customer_or_plan",
        field="customer",
    )
    for_alpha = operator.post(RULES, {**body, "customer": "alpha"}, format="json").json()
    default = operator.post(RULES, {**body, "plan": "growth"}, format="json").json()

    assert for_alpha["customer"] == "alpha"
    assert (default["customer"], default["plan"]) == (None, "growth")
    copy = AlertRule.objects.get(customer=customer_b)
    assert copy.plan_default_id == default["id"]
    listed = operator.get(RULES, {"plan": "growth"}).json()["results"]
    assert [r["id"] for r in listed] == [default["id"]]
    beta = operator.get(RULES, {"customer": "beta"}).json()["results"]
    assert [(r["id"], r["plan_default"]) for r in beta] == [(copy.pk, default["id"])]


def test_a_customer_key_cannot_set_plan_defaults_nor_see_them(alpha, customer_a, calls, growth):
    template = AlertRule.objects.create(plan=growth.plan, kind="threshold", meter=calls, levels=[5])
    body = {"meter": "api_call", "levels": ["1"], "plan": "growth"}

    assert_error(alpha.post(RULES, body, format="json"), 403, "operator_key_required")
    assert_error(alpha.get(f"{RULES}/{template.pk}"), 404, "not_found")
    assert alpha.get(RULES).json()["results"] == []


def test_a_customer_editing_its_copy_makes_it_its_own(alpha, operator, customer_a, calls, growth):
    subscribe(customer_a, growth, at=datetime(2026, 1, 1, tzinfo=UTC))
    default = operator.post(
        RULES, {"plan": "growth", "meter": "api_call", "levels": ["500"]}, format="json"
    ).json()
    copy = alpha.get(RULES).json()["results"][0]
    assert copy["plan_default"] == default["id"]

    mine = alpha.patch(f"{RULES}/{copy['id']}", {"enabled": False}, format="json").json()

    assert mine["plan_default"] is None and mine["enabled"] is False
    operator.patch(f"{RULES}/{default['id']}", {"levels": ["700"]}, format="json")
    assert alpha.get(f"{RULES}/{copy['id']}").json()["levels"] == ["500"]


def test_bad_list_filters_are_refused(alpha):
    assert_error(alpha.get(RULES, {"custmer": "beta"}), 400, "unknown_field", field="custmer")
    assert_error(alpha.get(RULES, {"kind": "often"}), 400, "invalid_choice", field="kind")


# --- Plan cap defaults ------------------------------------------------------------------


def test_an_operator_sets_lists_and_removes_a_plan_cap_default(operator, customer_a, calls, growth):
    subscribe(customer_a, growth, at=datetime(2026, 1, 1, tzinfo=UTC))

    created = operator.post(
        DEFAULTS,
        {"plan": "growth", "meter": "api_call", "limit": "250", "measure": "money"},
        format="json",
    )

    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["plan"], body["meter"], body["measure"], body["limit"], body["on_exceed"]) == (
        "growth",
        "api_call",
        "money",
        "250",
        "reject",
    )
    cap = Cap.objects.get(customer=customer_a)
    assert (cap.limit, cap.measure, cap.plan_default_id) == (250, "money", body["id"])
    assert operator.get(DEFAULTS, {"plan": "growth"}).json()["results"] == [body]
    assert operator.get(DEFAULTS, {"plan": "other"}).json()["results"] == []

    assert operator.delete(f"{DEFAULTS}/{body['id']}").status_code == 204
    assert not PlanCapDefault.objects.exists() and not Cap.objects.exists()
    assert_error(operator.delete(f"{DEFAULTS}/{body['id']}"), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"plan": "nope", "meter": "api_call", "limit": "1"}, "does_not_exist", "plan"),
        ({"plan": "growth", "meter": "nope", "limit": "1"}, "does_not_exist", "meter"),
        ({"plan": "growth", "meter": "api_call", "limit": "-1"}, "invalid", "limit"),
        ({"plan": "growth", "meter": "user_active", "limit": "1"}, "meter_not_cappable", "meter"),
        (
            {"plan": "growth", "meter": "api_call", "limit": "1", "on_exceed": "shrug"},
            "invalid_choice",
            "on_exceed",
        ),
    ],
)
def test_bad_plan_cap_defaults_are_refused(operator, growth, body, code, field):
    users_meter()
    assert_error(operator.post(DEFAULTS, body, format="json"), 400, code, field=field)
    assert not PlanCapDefault.objects.exists()


def test_plan_cap_defaults_are_written_by_operators_only(alpha, customer_a, calls, growth):
    default = PlanCapDefault.objects.create(plan=growth.plan, meter=calls, limit=10)
    # A customer key forced past the service's rules to hold plans:write: still refused.
    key, every_scope = make_api_key(customer=customer_a)
    ApiKey.objects.filter(pk=key.pk).update(scopes=list(ALL_SCOPES))
    body = {"plan": "growth", "meter": "api_call", "limit": "1"}

    assert_error(api(every_scope).post(DEFAULTS, body, format="json"), 403, "operator_key_required")
    assert_error(api(every_scope).delete(f"{DEFAULTS}/{default.pk}"), 403, "operator_key_required")
    assert_error(alpha.post(DEFAULTS, body, format="json"), 403, "insufficient_scope")
    # The catalog is readable, like the plans themselves.
    assert [d["id"] for d in alpha.get(DEFAULTS).json()["results"]] == [default.pk]
    assert PlanCapDefault.objects.get().limit == 10


def test_the_schema_documents_rules_and_plan_cap_defaults(db):
    paths = api().get("/api/v1/schema/", {"format": "json"}).json()["paths"]
    assert set(paths[RULES]) == {"get", "post"}
    assert set(paths[RULES + "/{rule_id}"]) == {"get", "patch", "delete"}
    assert set(paths[DEFAULTS]) == {"get", "post"}
    assert set(paths[DEFAULTS + "/{default_id}"]) == {"delete"}

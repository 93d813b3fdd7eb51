"""/api/v1/plans: the vendor's catalog; a price change is a new, immutable version."""

import pytest

from accounts.models import AuditLog
from invoicing.models import Plan, PlanVersion
from tests.accounts.api.support import assert_error
from tests.invoicing.factories import flat, per_unit, plan_version
from tests.metering.factories import api_calls_meter

from . import PLANS, customer_client, forced_customer_client, operator

pytestmark = pytest.mark.django_db

GRADUATED = {
    "kind": "usage",
    "meter": "api_call",
    "pricing_model": "graduated",
    "description": "API calls",
    "tiers": [{"up_to": "1000", "unit_price": "0"}, {"up_to": None, "unit_price": "0.002"}],
}


@pytest.fixture
def meter():
    return api_calls_meter()


@pytest.fixture
def growth(meter):
    plan_version(components=[flat("99.00"), per_unit(meter, "0.002", included="1000")])
    return plan_version(components=[flat("109.00"), GRADUATED])


def test_a_plan_reads_with_every_version_newest_first_and_prices_as_strings(customer_a, growth):
    body = customer_client(customer_a).get(f"{PLANS}/growth").json()

    assert (body["code"], body["currency"], body["is_active"]) == ("growth", "USD", True)
    assert [v["version"] for v in body["versions"]] == [2, 1]
    v2, v1 = body["versions"]
    assert v2["interval"] == "month"
    assert v2["components"][0] == {
        "position": 0,
        "kind": "flat_fee",
        "description": "Platform fee",
        "meter": None,
        "pricing_model": None,
        "unit_price": None,
        "tiers": [],
        "package_size": None,
        "included_units": "0",
        "amount": "109",
        "percent": None,
        "commitment_months": None,
    }
    assert v2["components"][1]["tiers"] == [
        {"up_to": "1000", "unit_price": "0", "flat_fee": "0"},
        {"up_to": None, "unit_price": "0.002", "flat_fee": "0"},
    ]
    usage = v1["components"][1]
    assert (usage["kind"], usage["meter"], usage["pricing_model"]) == (
        "usage",
        "api_call",
        "per_unit",
    )
    assert (usage["unit_price"], usage["included_units"]) == ("0.002", "1000")


def test_the_list_pages_plans_and_hides_retired_ones_from_customers(customer_a, growth, meter):
    plan_version(code="legacy", components=[flat("10")])
    Plan.objects.filter(code="legacy").update(is_active=False)

    listed = customer_client(customer_a).get(PLANS).json()
    assert [p["code"] for p in listed["results"]] == ["growth"]
    assert set(listed) == {"next", "previous", "results"}
    assert_error(customer_client(customer_a).get(f"{PLANS}/legacy"), 404, "not_found")

    client = operator()
    assert [p["code"] for p in client.get(PLANS).json()["results"]] == ["growth"]
    every = client.get(PLANS, {"include_inactive": "true"}).json()["results"]
    assert {p["code"] for p in every} == {"growth", "legacy"}
    assert client.get(f"{PLANS}/legacy").status_code == 200
    assert_error(client.get(PLANS, {"inactive": "1"}), 400, "unknown_field", field="inactive")
    assert_error(client.get(f"{PLANS}/nope"), 404, "not_found")


def test_operator_creates_a_plan_then_publishes_versions(meter):
    client = operator()

    created = client.post(
        PLANS, {"code": "scale", "name": "Scale", "currency": "EUR"}, format="json"
    )
    assert created.status_code == 201, created.content
    assert created.json()["versions"] == []

    published = client.post(
        f"{PLANS}/scale/versions",
        {
            "interval": "month",
            "components": [flat("500.00"), GRADUATED],
            "notes": "Launch prices",
        },
        format="json",
    )
    assert published.status_code == 201, published.content
    assert published.json()["version"] == 1
    again = client.post(
        f"{PLANS}/scale/versions",
        {"interval": "month", "components": [flat("550.00")]},
        format="json",
    )
    assert again.json()["version"] == 2

    listed = client.get(f"{PLANS}/scale/versions").json()["results"]
    assert [(v["version"], v["components"][0]["amount"]) for v in listed] == [
        (2, "550"),
        (1, "500"),
    ]
    assert AuditLog.objects.filter(action="plan.created").count() == 1
    assert AuditLog.objects.filter(action="plan.version_published").count() == 2


def test_a_version_never_changes_through_the_api(growth):
    client = operator()
    for method in ("put", "patch", "delete"):
        response = getattr(client, method)(
            f"{PLANS}/growth/versions", {"components": []}, format="json"
        )
        assert_error(response, 405, "method_not_allowed")
        assert_error(
            getattr(client, method)(f"{PLANS}/growth", {}, format="json"), 405, "method_not_allowed"
        )
    assert PlanVersion.objects.filter(plan__code="growth").count() == 2


def test_a_taken_plan_code_is_a_conflict(growth):
    response = operator().post(
        PLANS, {"code": "growth", "name": "Again", "currency": "USD"}, format="json"
    )
    assert_error(response, 409, "plan_exists", field="code")


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"code": "x", "name": "X", "currency": "USD", "price": "1"}, "unknown_field", "price"),
        ({"code": "has space", "name": "X", "currency": "USD"}, "invalid", "code"),
        ({"code": "x", "name": "X", "currency": "XXX"}, "invalid_choice", "currency"),
        ({"code": "x", "currency": "USD"}, "required", "name"),
        (
            {"code": "x", "name": "X\x00", "currency": "USD"},
            "null_characters_not_allowed",
            "name",
        ),
    ],
)
def test_bad_plans_are_refused_by_name(db, body, code, field):
    assert_error(operator().post(PLANS, body, format="json"), 400, code, field=field)
    assert not Plan.objects.exists()


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        # A float is not an exact price: refused, never rounded.
        (
            {"interval": "month", "components": [{"kind": "flat_fee", "amount": 99.99}]},
            "invalid",
            "components[0].amount",
        ),
        (
            {
                "interval": "month",
                "components": [
                    {
                        "kind": "usage",
                        "meter": "api_call",
                        "pricing_model": "per_unit",
                        "unit_price": 0.002,
                    }
                ],
            },
            "invalid",
            "components[0].unit_price",
        ),
        (
            {"interval": "month", "components": [{**GRADUATED, "meter": "nope"}]},
            "invalid",
            "components[0].meter",
        ),
        (
            {"interval": "month", "components": [{"kind": "flat_fee", "amount": "1", "x": 1}]},
            "unknown_field",
            "x",
        ),
        ({"interval": "month", "components": []}, "invalid", "components"),
        ({"interval": "week", "components": [flat("1")]}, "invalid_choice", "interval"),
        ({"interval": "month", "components": [flat("1")], "v": 3}, "unknown_field", "v"),
        (
            {"interval": "month", "components": [GRADUATED, GRADUATED]},
            "duplicate_meter",
            "components",
        ),
        # PostgreSQL text never holds NUL: refused by name, not a 500.
        (
            {"interval": "month", "components": [{**flat("1"), "description": "a\x00b"}]},
            "null_characters_not_allowed",
            "components[0].description",
        ),
        (
            {"interval": "month", "components": [{**GRADUATED, "meter": "api\x00call"}]},
            "invalid",
            "components[0].meter",
        ),
        (
            {"interval": "month", "components": [flat("1")], "notes": "\x00"},
            "null_characters_not_allowed",
            "notes",
        ),
    ],
)
def test_bad_versions_are_refused_by_name_and_publish_nothing(growth, body, code, field):
    response = operator().post(f"{PLANS}/growth/versions", body, format="json")
    assert_error(response, 400, code, field=field)
    assert PlanVersion.objects.filter(plan__code="growth").count() == 2


def test_versions_of_an_unknown_plan_are_a_404(db):
    response = operator().post(
        f"{PLANS}/nope/versions", {"interval": "month", "components": [flat("1")]}, format="json"
    )
    assert_error(response, 404, "not_found")


def test_a_plan_code_with_a_nul_in_the_url_is_a_404_not_a_crash(growth):
    # PostgreSQL text never holds NUL: the lookup itself would fail (a 500).
    client = operator()
    assert_error(client.get(f"{PLANS}/gro%00wth"), 404, "not_found")
    assert_error(client.get(f"{PLANS}/gro%00wth/versions"), 404, "not_found")
    body = {"interval": "month", "components": [flat("1")]}
    assert_error(client.post(f"{PLANS}/gro%00wth/versions", body, format="json"), 404, "not_found")


def test_only_operator_keys_publish_plans(customer_a, growth):
    body = {"interval": "month", "components": [flat("1")]}
    client = customer_client(customer_a)
    assert_error(
        client.post(f"{PLANS}/growth/versions", body, format="json"), 403, "insufficient_scope"
    )
    assert_error(
        client.post(PLANS, {"code": "x", "name": "X", "currency": "USD"}, format="json"),
        403,
        "insufficient_scope",
    )

    forced = forced_customer_client(customer_a, ["plans:write", "invoices:read"])
    assert_error(
        forced.post(f"{PLANS}/growth/versions", body, format="json"), 403, "operator_key_required"
    )
    assert PlanVersion.objects.filter(plan__code="growth").count() == 2

    reader = customer_client(customer_a, scopes=["usage:read"])
    assert_error(reader.get(PLANS), 403, "insufficient_scope")


def test_the_new_scopes_are_operator_only():
    from accounts.scopes import CUSTOMER_KEY_SCOPES, SCOPES

    for name in ("plans:write", "subscriptions:write", "invoices:write"):
        assert SCOPES[name].operator_only
        assert name not in CUSTOMER_KEY_SCOPES
    assert "invoices:read" in CUSTOMER_KEY_SCOPES

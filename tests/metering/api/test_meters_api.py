"""/api/v1/meters: vendor-wide definitions any key may read and only operators may change."""

import pytest

from accounts.models import ApiKey, AuditLog
from metering.ingest import events_ingest
from metering.models import Meter
from tests.accounts.api.support import api, assert_error
from tests.accounts.factories import make_api_key
from tests.metering.factories import MeterFactory, api_calls_meter, event

from .support import METERS, USAGE, ago, operator

pytestmark = pytest.mark.django_db

TOKENS = {
    "code": "llm_tokens",
    "name": "LLM tokens",
    "unit_label": "tokens",
    "aggregation": "sum",
    "value_property": "tokens",
    "filters": [{"property": "billable", "equals": True}],
    "group_by": ["model", "region"],
}


def test_operator_defines_a_meter_and_its_rebuild_is_queued():
    response = operator().post(METERS, TOKENS, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body == {
        **TOKENS,
        "filters": [{"property": "billable", "values": ["true"]}],
        "is_active": True,
        "definition_version": 1,
        "rebuild_status": "queued",
        "rebuild_progress": 0,
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
    }
    assert Meter.objects.get(code="llm_tokens").aggregation == "sum"
    assert AuditLog.objects.filter(action="meter.created").count() == 1


def test_meter_created_after_its_events_counts_them_once_rebuilt(
    customer_a, django_capture_on_commit_callbacks
):
    events_ingest(
        events=[
            event(customer_a, "early-1", name="llm_tokens", ts=ago(hours=5), tokens=40,
                  billable=True, model="large"),
            event(customer_a, "early-2", name="llm_tokens", ts=ago(hours=4), tokens=2,
                  billable=False, model="large"),
        ]
    )  # fmt: skip
    client = operator()

    with django_capture_on_commit_callbacks(execute=True):
        created = client.post(METERS, TOKENS, format="json")
    assert created.status_code == 201, created.content

    detail = client.get(f"{METERS}/llm_tokens").json()
    assert (detail["rebuild_status"], detail["rebuild_progress"]) == ("idle", 100)
    usage = client.get(
        USAGE, {"customer": "alpha", "meter": "llm_tokens", "start": ago(days=1), "end": ago()}
    ).json()
    assert usage["total"] == "40"


def test_changing_what_a_meter_counts_bumps_its_version_and_queues_a_rebuild():
    MeterFactory(**{**TOKENS, "filters": []})
    client = operator()

    renamed = client.patch(f"{METERS}/llm_tokens", {"name": "Tokens"}, format="json").json()
    assert (renamed["name"], renamed["definition_version"]) == ("Tokens", 1)
    assert renamed["rebuild_status"] == "idle"

    changed = client.patch(f"{METERS}/llm_tokens", {"group_by": ["model"]}, format="json")

    assert changed.status_code == 200, changed.content
    body = changed.json()
    assert (body["group_by"], body["definition_version"]) == (["model"], 2)
    assert (body["rebuild_status"], body["rebuild_progress"]) == ("queued", 0)
    entry = AuditLog.objects.filter(action="meter.updated").latest("id")
    assert entry.before == {"group_by": ["model", "region"]}


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({**TOKENS, "value_property": ""}, 400, "invalid", "value_property"),
        ({**TOKENS, "aggregation": "median"}, 400, "invalid_choice", "aggregation"),
        ({**TOKENS, "code": "9tokens"}, 400, "invalid", "code"),
        ({**TOKENS, "group_by": ["a", "b", "c", "d"]}, 400, "invalid", "group_by"),
        ({**TOKENS, "filters": [{"property": "x", "equals": 1, "in": [2]}]}, 400, "invalid",
         "filters"),
        ({**TOKENS, "rebuild_status": "idle"}, 400, "unknown_field", "rebuild_status"),
        ({k: v for k, v in TOKENS.items() if k != "unit_label"}, 400, "required", "unit_label"),
        ({**TOKENS, "code": "api_call"}, 409, "meter_code_conflict", "code"),
    ],
)  # fmt: skip
def test_bad_definitions_name_the_problem(body, status, code, field):
    api_calls_meter()
    assert_error(operator().post(METERS, body, format="json"), status, code, field=field)
    assert not Meter.objects.filter(name="LLM tokens").exists()


def test_any_key_with_usage_read_reads_the_definitions(customer_a, customer_a_token):
    api_calls_meter()
    MeterFactory(code="retired", name="Retired", is_active=False)
    client = api(customer_a_token)

    listed = client.get(METERS).json()["results"]
    assert [m["code"] for m in listed] == ["api_call"]
    detail = client.get(f"{METERS}/api_call").json()
    assert detail["group_by"] == ["endpoint", "region"]
    assert detail["rebuild_status"] == "idle" and detail["rebuild_progress"] == 100
    # A retired meter is the operator's business.
    assert_error(client.get(f"{METERS}/retired"), 404, "not_found")
    assert_error(client.get(f"{METERS}/nope"), 404, "not_found")


def test_operator_can_list_retired_meters_too():
    api_calls_meter()
    MeterFactory(code="retired", name="Retired", is_active=False)
    client = operator()
    assert [m["code"] for m in client.get(METERS).json()["results"]] == ["api_call"]
    listed = client.get(METERS, {"include_inactive": "true"}).json()["results"]
    assert {m["code"] for m in listed} == {"api_call", "retired"}
    assert client.get(f"{METERS}/retired").json()["is_active"] is False


def test_customer_keys_cannot_change_meters(customer_a, customer_a_token):
    api_calls_meter()
    client = api(customer_a_token)
    assert_error(client.post(METERS, TOKENS, format="json"), 403, "insufficient_scope")
    assert_error(
        client.patch(f"{METERS}/api_call", {"name": "Mine"}, format="json"),
        403,
        "insufficient_scope",
    )

    key, token = make_api_key(customer=customer_a)
    ApiKey.objects.filter(pk=key.pk).update(scopes=["meters:write", "usage:read"])
    forced = api(token)
    assert_error(forced.post(METERS, TOKENS, format="json"), 403, "operator_key_required")
    assert_error(
        forced.patch(f"{METERS}/api_call", {"name": "Mine"}, format="json"),
        403,
        "operator_key_required",
    )
    assert Meter.objects.get(code="api_call").name == "API calls"
    assert not Meter.objects.filter(code="llm_tokens").exists()


def test_meters_write_is_an_operator_only_scope(customer_a):
    from accounts.scopes import CUSTOMER_KEY_SCOPES, SCOPES

    assert SCOPES["meters:write"].operator_only
    assert "meters:write" not in CUSTOMER_KEY_SCOPES
    assert "usage:read" in CUSTOMER_KEY_SCOPES

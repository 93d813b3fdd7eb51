"""Metering in the Django admin: finance staff look, meters change only through services."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from accounts import services as account_services
from accounts.models import AuditLog
from metering import reconciliation, services
from metering.admin import EstimatedCountPaginator
from metering.ingest import events_ingest
from metering.models import Meter, UsageDiscrepancy, UsageEvent, UsageRollup
from tests.accounts.factories import UserFactory
from tests.metering.factories import api_calls_meter, data_meter, event

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, tzinfo=UTC)
MODELS = ["meter", "usageevent", "usagediscrepancy", "usagereconciliationrun", "customerusagestate"]


def changelist(model):
    return reverse(f"admin:metering_{model}_changelist")


@pytest.fixture
def superuser_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def staff_client(client, group_name):
    account_services.staff_groups_sync()
    user = UserFactory(is_staff=True)
    user.groups.add(Group.objects.get(name=group_name))
    client.force_login(user)
    return client


@pytest.fixture
def populated(customer_a, customer_b):
    """A meter with events, a late one, a void one, a discrepancy and a run."""
    meter = api_calls_meter()
    data_meter()
    events_ingest(
        events=[
            event(customer_a, "evt-a-1", ts="2026-11-02T10:00:00Z", endpoint="/v1", region="eu"),
            event(customer_a, "evt-a-2", ts="2026-11-02T11:00:00Z", endpoint="/v2", region="us"),
            event(customer_b, "evt-b-1", ts="2026-11-03T09:00:00Z", endpoint="/v1", region="eu"),
            event(customer_b, "other", name="not_metered", ts="2026-11-03T09:00:00Z"),
        ],
        now=NOW,
    )
    services.events_void(
        actor=None, customer=customer_a, idempotency_keys=["evt-a-2"], reason="duplicate"
    )
    services.usage_close_through(
        actor=None, customer=customer_b, closed_through=datetime(2026, 11, 1, tzinfo=UTC)
    )
    events_ingest(events=[event(customer_b, "evt-late", ts="2026-10-30T09:00:00Z")], now=NOW)
    UsageRollup.objects.filter(customer=customer_b).update(event_count=9)
    reconciliation.usage_reconcile(now=NOW + timedelta(hours=1))  # events arrived at NOW
    return meter


# --- Pages --------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_every_metering_list_loads_and_searches_for_a_superuser(superuser_client, populated, model):
    assert superuser_client.get(changelist(model)).status_code == 200
    assert superuser_client.get(changelist(model), {"q": "alpha"}).status_code == 200


@pytest.mark.parametrize("model", MODELS)
def test_finance_staff_see_every_metering_list_read_only(client, populated, model):
    finance = staff_client(client, "finance")
    response = finance.get(changelist(model))
    assert response.status_code == 200
    assert f"/admin/metering/{model}/add/" not in response.text


@pytest.mark.parametrize("group", ["csm", "support"])
def test_csm_and_support_see_meters_and_events_but_not_reconciliation(client, group):
    staff = staff_client(client, group)
    assert staff.get(changelist("meter")).status_code == 200
    assert staff.get(changelist("usageevent")).status_code == 200
    assert staff.get(changelist("customerusagestate")).status_code == 200
    assert staff.get(changelist("usagediscrepancy")).status_code == 403
    assert staff.get(changelist("usagereconciliationrun")).status_code == 403


def test_finance_cannot_create_or_edit_meters(client, populated):
    finance = staff_client(client, "finance")
    assert finance.get(reverse("admin:metering_meter_add")).status_code == 403
    change = reverse("admin:metering_meter_change", args=[populated.pk])
    assert finance.get(change).status_code == 200  # the read-only view
    assert finance.post(change, {"name": "Renamed"}).status_code == 403
    assert Meter.objects.get(pk=populated.pk).name == "API calls"


def test_the_meter_list_shows_aggregation_dimensions_and_rebuild_state(superuser_client):
    api_calls_meter()
    Meter.objects.create(
        code="gb",
        name="Data",
        unit_label="GB",
        aggregation="sum",
        value_property="gb",
        rebuild_status="running",
        rebuild_progress=45,
    )

    html = superuser_client.get(changelist("meter")).text

    assert "endpoint, region" in html
    assert "Rebuilding: 45%" in html
    assert "Up to date (v1)" in html


def test_discrepancies_show_both_values_and_filter_by_meter(superuser_client, populated):
    discrepancy = UsageDiscrepancy.objects.get()
    response = superuser_client.get(
        changelist("usagediscrepancy"), {"meter__id__exact": populated.pk}
    )
    assert response.status_code == 200
    assert "beta" in response.text.lower()
    assert str(discrepancy.realtime_value["event_count"]) in response.text
    year = superuser_client.get(changelist("usagediscrepancy"), {"found_at__year": NOW.year})
    assert year.status_code == 200


# --- Raw events: read-only, searchable, never counted in full ----------------------------


def test_events_can_be_found_by_key_or_customer_and_filtered(superuser_client, populated):
    url = changelist("usageevent")

    def keys(**params):
        html = superuser_client.get(url, params).text
        return set(re.findall(r"(evt-[a-z]-\d|evt-late|other)\b", html))

    assert keys(q="evt-a-1") == {"evt-a-1"}
    assert keys(q="beta") == {"evt-b-1", "evt-late", "other"}
    assert keys(q="nothing-like-it") == set()
    assert keys(event_name="api_call", late__exact=1) == {"evt-late"}
    assert keys(void="yes") == {"evt-a-2"}
    assert "evt-a-2" not in keys(void="no")


def test_events_can_be_neither_added_changed_nor_deleted(superuser_client, populated):
    some = UsageEvent.objects.get(idempotency_key="evt-a-1")
    assert superuser_client.get(reverse("admin:metering_usageevent_add")).status_code == 403
    change = reverse("admin:metering_usageevent_change", args=[some.pk])
    assert superuser_client.post(change, {"event_name": "x"}).status_code == 403
    delete = reverse("admin:metering_usageevent_delete", args=[some.pk])
    assert superuser_client.post(delete, {"post": "yes"}).status_code == 403
    assert "delete_selected" not in superuser_client.get(changelist("usageevent")).text
    superuser_client.post(
        changelist("usageevent"), {"action": "delete_selected", "_selected_action": [some.pk]}
    )
    assert UsageEvent.objects.filter(pk=some.pk).exists()


def _ingest_many(customer, count):
    events_ingest(
        events=[
            event(customer, f"bulk-{i}", ts=(NOW - timedelta(minutes=i)).isoformat())
            for i in range(count)
        ],
        now=NOW,
    )


def test_the_event_list_never_counts_the_whole_table(
    superuser_client, customer_a, django_assert_max_num_queries
):
    api_calls_meter()
    _ingest_many(customer_a, EstimatedCountPaginator.EXACT_UP_TO + 200)

    with django_assert_max_num_queries(10) as captured:
        response = superuser_client.get(changelist("usageevent"))

    assert response.status_code == 200
    sql = [q["sql"] for q in captured.captured_queries]
    counts = [s for s in sql if "COUNT(" in s.upper() and "metering_usageevent" in s]
    assert counts, "the bounded count ran"
    assert all("LIMIT" in s.upper() for s in counts), counts
    assert any(s.startswith("EXPLAIN") for s in sql), "beyond the bound: the planner's estimate"
    assert "bulk-0" in response.text  # newest first
    assert re.search(r"about \d+ usage events", response.text)


def test_a_small_filtered_list_is_counted_exactly(superuser_client, customer_a, customer_b):
    api_calls_meter()
    _ingest_many(customer_a, 30)
    _ingest_many(customer_b, 1200)

    response = superuser_client.get(changelist("usageevent"), {"q": "alpha"})

    assert response.context["cl"].result_count == 30
    assert "about" not in response.text.split('class="paginator"')[1]


# --- Meters change through the services -----------------------------------------------------


def meter_form(**overrides):
    data = {
        "code": "gpu_seconds",
        "name": "GPU time",
        "unit_label": "s",
        "is_active": "on",
        "aggregation": "sum",
        "value_property": "seconds",
        "filters": '[{"property": "tier", "equals": "paid"}]',
        "group_by": "region",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_a_meter_created_in_the_admin_is_audited_normalized_and_rebuilt(
    superuser_client, customer_a, django_capture_on_commit_callbacks
):
    events_ingest(
        events=[
            event(
                customer_a,
                "early",
                name="gpu_seconds",
                ts="2026-11-02T10:00:00Z",
                seconds=5,
                tier="paid",
                region="eu",
            ),
        ],
        now=NOW,
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = superuser_client.post(reverse("admin:metering_meter_add"), meter_form())

    assert response.status_code == 302
    meter = Meter.objects.get(code="gpu_seconds")
    assert meter.filters == [{"property": "tier", "values": ["paid"]}]
    assert meter.group_by == ["region"]
    assert (meter.rebuild_status, meter.rebuild_progress) == ("idle", 100)
    assert UsageRollup.objects.get(meter=meter).value_sum == 5
    audit = AuditLog.objects.get(action="meter.created")
    assert audit.actor_user.is_superuser and audit.object_id == str(meter.pk)


def test_a_meter_edited_in_the_admin_goes_through_the_service(
    superuser_client, django_capture_on_commit_callbacks
):
    meter = services.meter_create(
        actor=None,
        code="gpu_seconds",
        name="GPU time",
        unit_label="s",
        aggregation="sum",
        value_property="seconds",
    )
    url = reverse("admin:metering_meter_change", args=[meter.pk])

    with django_capture_on_commit_callbacks(execute=True):
        response = superuser_client.post(url, meter_form(group_by="region,model", filters="[]"))

    assert response.status_code == 302
    meter.refresh_from_db()
    assert meter.group_by == ["region", "model"]
    assert meter.definition_version == 2 and meter.rebuilt_version == 2
    audit = AuditLog.objects.get(action="meter.updated")
    assert audit.before == {"group_by": []}
    assert audit.after == {"group_by": ["region", "model"]}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"value_property": ""}, "needs the value_property"),
        ({"group_by": "region,region"}, "group_by takes up to 3 distinct properties"),
        ({"filters": '[{"property": "tier"}]'}, "takes exactly one of equals or in"),
        ({"code": "1bad"}, "Start with a letter"),
    ],
)
def test_a_meter_the_service_would_refuse_is_a_form_error(superuser_client, overrides, message):
    response = superuser_client.post(reverse("admin:metering_meter_add"), meter_form(**overrides))

    assert response.status_code == 200
    assert message in response.text
    assert not Meter.objects.exists()
    assert not AuditLog.objects.filter(action="meter.created").exists()


def test_a_duplicate_code_is_a_form_error(superuser_client):
    api_calls_meter()
    response = superuser_client.post(
        reverse("admin:metering_meter_add"), meter_form(code="api_call")
    )
    assert response.status_code == 200
    assert Meter.objects.count() == 1


def test_rebuild_now_queues_and_audits(
    superuser_client, populated, django_capture_on_commit_callbacks
):
    UsageRollup.objects.filter(meter=populated).update(event_count=50)

    with django_capture_on_commit_callbacks(execute=True):
        response = superuser_client.post(
            changelist("meter"), {"action": "rebuild_now", "_selected_action": [populated.pk]}
        )

    assert response.status_code == 302
    assert AuditLog.objects.filter(
        action="meter.rebuild_requested", object_id=str(populated.pk)
    ).exists()
    assert set(
        UsageRollup.objects.filter(meter=populated).values_list("event_count", flat=True)
    ) == {1}


def test_meters_cannot_be_deleted(superuser_client, populated):
    delete = reverse("admin:metering_meter_delete", args=[populated.pk])
    assert superuser_client.post(delete, {"post": "yes"}).status_code == 403
    assert Meter.objects.filter(pk=populated.pk).exists()

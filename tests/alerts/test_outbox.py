"""The outbox: persona routing to real loopback receivers, and sending exactly once.

Webhooks, Slack and Teams go to HTTP receivers on loopback; email to a real SMTP server
(aiosmtpd). Deliveries are sent by the Celery task (eager in tests) once the alert's
transaction commits, or by the sweep.
"""

import email
import json
import logging
from datetime import UTC, datetime, timedelta
from email import policy

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from accounts.models import AuditLog, Contact
from alerts.channels import RETRY_DELAYS
from alerts.models import Alert, AlertRule, WebhookEndpoint
from alerts.selectors.endpoints import endpoint_signing_secrets
from alerts.services import endpoint_create, evaluation, outbox
from metering.ingest import events_ingest
from tests.alerts.receivers import Receiver
from tests.concurrency import in_threads
from tests.invoicing.factories import flat, per_unit, plan_version, subscribe
from tests.metering.factories import api_calls_meter, event


@pytest.fixture
def calls(db):
    return api_calls_meter()


@pytest.fixture
def receivers():
    with Receiver() as hook, Receiver() as slack, Receiver() as teams, Receiver() as endpoint:
        yield {"hook": hook, "slack": slack, "teams": teams, "endpoint": endpoint}


@pytest.fixture
def team(customer_a, receivers):
    """A contact of every persona, each with the channels that persona is reached on."""
    contacts = {
        "developer": Contact.objects.create(
            customer=customer_a,
            name="Dana Dev",
            persona="developer",
            email="dana@alpha.example.com",  # not used: developers get webhook and Slack
            webhook_url=receivers["hook"].url("/dev"),
            slack_webhook_url=receivers["slack"].url("/slack"),
        ),
        "finance": Contact.objects.create(
            customer=customer_a,
            name="Fran Finance",
            persona="finance",
            email="fran@alpha.example.com",
            teams_webhook_url=receivers["teams"].url("/teams"),
        ),
        "procurement": Contact.objects.create(
            customer=customer_a,
            name="Pat Procurement",
            persona="procurement",
            email="pat@alpha.example.com",
        ),
        "executive": Contact.objects.create(
            customer=customer_a, name="Eve Exec", persona="executive", email="eve@alpha.example.com"
        ),
    }
    return contacts


def fire(customer, meter, *, audience=None, now=None):
    """A threshold alert at 5 calls, fired through the real path; deliveries run eagerly."""
    now = now or timezone.now()
    rule = AlertRule.objects.create(
        customer=customer,
        kind="threshold",
        meter=meter,
        levels=[5],
        **({"audience": audience} if audience else {}),
    )
    batch = [event(customer, f"e-{i}", ts=now.isoformat()[:19] + "Z") for i in range(5)]
    assert events_ingest(events=batch, now=now).accepted == 5
    evaluation.thresholds_evaluate(now=now)  # where ingest's own check did not run yet
    return Alert.objects.get(rule=rule)


def mails_by_recipient(smtp) -> dict[str, email.message.EmailMessage]:
    return {
        envelope.rcpt_tos[0]: email.message_from_bytes(
            envelope.original_content, policy=policy.default
        )
        for envelope in smtp.messages
    }


@pytest.mark.django_db
def test_each_persona_hears_on_its_channels_with_its_own_message(
    customer_a, calls, team, receivers, smtp, django_capture_on_commit_callbacks
):
    version = plan_version(components=[flat("99"), per_unit(calls, "0.01", included="2")])
    subscribe(customer_a, version, at=datetime(2026, 1, 1, tzinfo=UTC))
    endpoint_create(actor=None, customer=customer_a, url=receivers["endpoint"].url("/all"))

    with django_capture_on_commit_callbacks(execute=True):
        alert = fire(customer_a, calls)

    assert sorted(alert.deliveries.values_list("persona", "channel")) == [
        ("developer", "slack"),
        ("developer", "webhook"),  # the contact's URL
        ("developer", "webhook"),  # the customer's endpoint
        ("executive", "email"),
        ("finance", "email"),
        ("finance", "teams"),
        ("procurement", "email"),
    ]
    assert set(alert.deliveries.values_list("status", flat=True)) == {"delivered"}
    for delivery in alert.deliveries.all():
        (attempt,) = delivery.attempt_log.all()
        assert attempt.status == "delivered"

    # Developers: signed Standard Webhooks with the technical state, and Slack.
    (dev_hook,) = receivers["hook"].requests
    contact_endpoint = WebhookEndpoint.objects.get(contact=team["developer"])
    (secret,) = endpoint_signing_secrets(contact_endpoint)
    body = Webhook(secret).verify(dev_hook.body, dev_hook.headers)
    assert body["type"] == "alert.triggered"
    assert (body["data"]["meter"], body["data"]["level"]) == ("api_call", "5")
    assert body["data"]["evidence"]["usage"] == "5"
    assert receivers["endpoint"].requests  # the customer's own endpoint too
    slack = json.loads(receivers["slack"].requests[0].body)
    slack_text = json.dumps(slack)
    assert "Usage this period" in slack_text and "Period resets" in slack_text
    assert "Rate per day this period" in slack_text
    assert "Projected invoice" not in slack_text

    # Finance: the budget impact on Teams and by email; procurement by email.
    teams_text = receivers["teams"].requests[0].body.decode()
    assert "Projected invoice" in teams_text
    mails = mails_by_recipient(smtp)
    assert set(mails) == {
        "fran@alpha.example.com",
        "pat@alpha.example.com",
        "eve@alpha.example.com",
    }
    finance_text = mails["fran@alpha.example.com"].get_body(preferencelist=("plain",)).get_content()
    assert "Projected invoice" in finance_text and "USD" in finance_text
    assert "Left under the cap" not in finance_text
    executive = mails["eve@alpha.example.com"].get_body(preferencelist=("plain",)).get_content()
    assert "Usage this period" not in executive
    # The budget was read once and kept with the alert.
    alert.refresh_from_db()
    assert alert.evidence["budget"]["currency"] == "USD"


@pytest.mark.django_db
def test_a_rule_for_developers_only_reaches_no_one_else(
    customer_a, calls, team, receivers, smtp, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        alert = fire(customer_a, calls, audience=["developer"])
    assert set(alert.deliveries.values_list("persona", flat=True)) == {"developer"}
    assert smtp.messages == []
    assert receivers["teams"].requests == []


@pytest.mark.django_db(transaction=True)
def test_a_duplicated_task_sends_once(customer_a, calls, receivers, broker_down):
    Contact.objects.create(
        customer=customer_a, name="Dev", persona="developer", webhook_url=receivers["hook"].url()
    )
    receivers["hook"].respond(200, delay=0.3)  # slow enough for the copies to overlap
    alert = fire(customer_a, calls)  # no wake-ups get through: the copies below are the tasks
    (delivery,) = alert.deliveries.all()

    results = in_threads(6, lambda i: outbox.delivery_send(delivery.pk))

    assert results.count("delivered") == 1 and results.count(None) == 5
    assert len(receivers["hook"].requests) == 1
    assert delivery.attempt_log.count() == 1
    assert outbox.delivery_send(delivery.pk) is None  # and later copies find it done


@pytest.mark.django_db(transaction=True)
def test_a_broker_outage_delays_deliveries_and_loses_none(
    customer_a, calls, receivers, smtp, broker_down, caplog
):
    Contact.objects.create(
        customer=customer_a, name="Dev", persona="developer", webhook_url=receivers["hook"].url()
    )
    Contact.objects.create(
        customer=customer_a, name="Fin", persona="finance", email="fin@alpha.example.com"
    )
    AlertRule.objects.create(customer=customer_a, kind="threshold", meter=calls, levels=[5])
    now = timezone.now()
    batch = [event(customer_a, f"e-{i}", ts=now.isoformat()[:19] + "Z") for i in range(5)]
    # Ingest commits; the threshold check cannot be handed to a worker, so the request
    # makes it; the alert's wake-ups cannot be sent either. No error reaches the caller.
    with caplog.at_level(logging.WARNING):
        assert events_ingest(events=batch, now=now).accepted == 5
    assert "checking in the request" in caplog.text
    assert "the sweep will send it" in caplog.text
    alert = Alert.objects.get()
    assert set(alert.deliveries.values_list("status", flat=True)) == {"pending"}
    assert receivers["hook"].requests == [] and smtp.messages == []

    # The broker is back: Beat's sweep sends everything, once.
    assert outbox.deliveries_sweep() == 2
    assert outbox.deliveries_sweep() == 0
    assert set(alert.deliveries.values_list("status", flat=True)) == {"delivered"}
    assert len(receivers["hook"].requests) == 1 and len(smtp.messages) == 1


@pytest.mark.django_db
def test_failures_retry_on_the_backoff_schedule_then_deliver(
    customer_a, calls, receivers, django_capture_on_commit_callbacks
):
    Contact.objects.create(
        customer=customer_a, name="Dev", persona="developer", webhook_url=receivers["hook"].url()
    )
    receivers["hook"].respond(503)
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        alert = fire(customer_a, calls, now=now)
    (delivery,) = alert.deliveries.all()
    delivery.refresh_from_db()
    first_wait = delivery.next_attempt_at - delivery.attempt_log.get().attempted_at
    nominal = RETRY_DELAYS[0]
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 503)
    assert nominal / 2 <= first_wait <= nominal * 3 / 2

    assert outbox.deliveries_sweep() == 0  # not due yet
    receivers["hook"].respond(200)
    assert outbox.deliveries_sweep(now=delivery.next_attempt_at + timedelta(seconds=1)) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    assert list(delivery.attempt_log.values_list("status_code", flat=True)) == [503, 200]
    # The receiver saw the same message id both times: it can deduplicate.
    ids = {r.headers["webhook-id"] for r in receivers["hook"].requests}
    assert ids == {f"msg_{delivery.pk}"}


@pytest.mark.django_db
def test_the_schedule_gives_up_after_about_three_days(customer_a, calls, receivers):
    Contact.objects.create(
        customer=customer_a, name="Dev", persona="developer", webhook_url=receivers["hook"].url()
    )
    receivers["hook"].respond(500)
    alert = fire(customer_a, calls)
    (delivery,) = alert.deliveries.all()
    moment = timezone.now()
    while True:
        delivery.refresh_from_db()
        if delivery.status != "pending":
            break
        moment = max(moment, delivery.next_attempt_at)
        outbox.delivery_send(delivery.pk, now=moment)
    assert delivery.status == "failed"
    assert delivery.attempts == 14
    span = delivery.attempt_log.last().attempted_at - delivery.attempt_log.first().attempted_at
    assert timedelta(days=2) < span < timedelta(days=4)


@pytest.mark.django_db
def test_410_disables_the_endpoint_and_skips_what_was_queued_for_it(
    customer_a, calls, receivers, django_capture_on_commit_callbacks
):
    endpoint = endpoint_create(actor=None, customer=customer_a, url=receivers["endpoint"].url())
    receivers["endpoint"].respond(410)
    with django_capture_on_commit_callbacks(execute=True):
        alert = fire(customer_a, calls)
    (delivery,) = alert.deliveries.all()
    endpoint.refresh_from_db()
    assert (delivery.status, delivery.last_status_code) == ("failed", 410)
    assert not endpoint.enabled and "410" in endpoint.disabled_reason

    # The next alert for the customer records the endpoint's delivery as skipped.
    AlertRule.objects.create(customer=customer_a, kind="threshold", meter=calls, levels=[5])
    (second,) = evaluation.thresholds_evaluate(now=timezone.now())
    (skipped,) = second.deliveries.all()
    assert skipped.status == "skipped"
    assert len(receivers["endpoint"].requests) == 1


@pytest.mark.django_db
def test_a_failed_delivery_is_replayed_from_a_fresh_schedule_and_audited(
    customer_a, calls, receivers, owner_a, django_capture_on_commit_callbacks
):
    Contact.objects.create(
        customer=customer_a, name="Dev", persona="developer", webhook_url=receivers["hook"].url()
    )
    receivers["hook"].respond(400)  # permanent
    with django_capture_on_commit_callbacks(execute=True):
        alert = fire(customer_a, calls)
    (delivery,) = alert.deliveries.all()
    assert delivery.status == "failed"

    receivers["hook"].respond(200)
    with django_capture_on_commit_callbacks(execute=True):
        outbox.delivery_replay(actor=owner_a.user, delivery=delivery)
    delivery.refresh_from_db()
    assert delivery.status == "delivered"
    assert list(delivery.attempt_log.values_list("status_code", flat=True)) == [400, 200]
    assert AuditLog.objects.filter(action="delivery.replayed").count() == 1
    with pytest.raises(Exception, match="Only failed or skipped"):
        outbox.delivery_replay(actor=owner_a.user, delivery=delivery)


@pytest.mark.django_db
def test_a_dry_run_installation_records_deliveries_without_sending(
    customer_a, calls, receivers, settings, django_capture_on_commit_callbacks
):
    settings.ALERTS_OUTBOUND_DRY_RUN = True
    Contact.objects.create(
        customer=customer_a, name="Dev", persona="developer", webhook_url=receivers["hook"].url()
    )
    with django_capture_on_commit_callbacks(execute=True):
        alert = fire(customer_a, calls)
    (delivery,) = alert.deliveries.all()
    assert delivery.status == "skipped"
    assert delivery.attempt_log.get().error_code == "dry_run"
    assert receivers["hook"].requests == []


@pytest.mark.django_db
def test_an_endpoint_naming_personas_gets_only_their_alerts(
    customer_a, calls, receivers, django_capture_on_commit_callbacks
):
    endpoint_create(
        actor=None, customer=customer_a, url=receivers["endpoint"].url(), personas=["finance"]
    )
    with django_capture_on_commit_callbacks(execute=True):
        for_developers = fire(customer_a, calls, audience=["developer"])
    assert not for_developers.deliveries.exists()

    AlertRule.objects.create(
        customer=customer_a, kind="threshold", meter=calls, levels=[5], audience=["finance"]
    )
    with django_capture_on_commit_callbacks(execute=True):
        (for_finance,) = evaluation.thresholds_evaluate(now=timezone.now())
    (delivery,) = for_finance.deliveries.all()
    assert (delivery.channel, delivery.persona, delivery.status) == (
        "webhook",
        "finance",
        "delivered",
    )


@pytest.mark.django_db(transaction=True)
def test_the_worker_that_fires_an_alert_sends_it_without_another_hop(
    customer_a, calls, receivers, broker_down, caplog
):
    from alerts.tasks import thresholds_evaluate

    endpoint_create(actor=None, customer=customer_a, url=receivers["endpoint"].url())
    rule = AlertRule.objects.create(customer=customer_a, kind="threshold", meter=calls, levels=[5])
    now = timezone.now()
    batch = [event(customer_a, f"e-{i}", ts=now.isoformat()[:19] + "Z") for i in range(5)]
    hooks_pairs = [[customer_a.pk, calls.pk]]
    from metering import hooks

    hooks.unregister(evaluation.on_usage_recorded)
    try:
        assert events_ingest(events=batch, now=now).accepted == 5
    finally:
        hooks.register_usage_recorded(evaluation.on_usage_recorded)

    with caplog.at_level(logging.WARNING):
        assert thresholds_evaluate(hooks_pairs) == 1  # the task's body, as a worker runs it
    (delivery,) = Alert.objects.get(rule=rule).deliveries.all()
    assert delivery.status == "delivered"
    assert len(receivers["endpoint"].requests) == 1
    assert "sweep will send" not in caplog.text  # no wake-up was even tried

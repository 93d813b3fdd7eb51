"""Self-tests of the Stripe fakes and the fault proxy, through the real SDK over HTTP."""

import json

import pytest
import stripe

from tests.stripe_servers.fake_stripe import parse_form

SEND_INVOICE = {"collection_method": "send_invoice", "days_until_due": 30}


def draft(client, customer="cus_test", **params):
    return client.v1.invoices.create(params={"customer": customer, **SEND_INVOICE, **params})


def add_item(client, invoice_id, amount, **params):
    return client.v1.invoice_items.create(
        params={"invoice": invoice_id, "amount": amount, "currency": "eur", **params}
    )


def test_form_parser_reads_stripe_nested_keys():
    pairs = [
        ("customer", "cus_1"),
        ("metadata[meterbook_invoice]", "42"),
        ("metadata[0]", "kept as a key"),
        ("lines[1][amount]", "7"),
        ("lines[0][amount]", "5"),
        ("lines[0][type]", "custom_line_item"),
        ("expand[]", "lines"),
        ("expand[]", "customer"),
        ("period[start]", "1"),
    ]
    assert parse_form(pairs) == {
        "customer": "cus_1",
        "metadata": {"meterbook_invoice": "42", "0": "kept as a key"},
        "lines": [{"amount": "5", "type": "custom_line_item"}, {"amount": "7"}],
        "expand": ["lines", "customer"],
        "period": {"start": "1"},
    }


def test_customers_round_trip_through_the_proxy_to_localstripe(stripe_env):
    client = stripe_env.client()
    created = client.v1.customers.create(
        params={"email": "billing@alpha.example.com", "metadata": {"meterbook_customer": "7"}}
    )
    fetched = client.v1.customers.retrieve(created.id)
    listed = client.v1.customers.list()

    assert created.id.startswith("cus_")
    assert fetched.metadata["meterbook_customer"] == "7"
    assert [c.id for c in listed.data] == [created.id]
    assert {p.upstream for p in stripe_env.proxy.log} == {stripe_env.localstripe_url}
    assert stripe_env.fake.requests == []


def test_send_invoice_life_cycle_keeps_totals_consistent(stripe_env):
    client = stripe_env.client()
    invoice = draft(client, currency="eur", metadata={"meterbook_invoice": "42"})
    assert (invoice.object, invoice.status, invoice.livemode) == ("invoice", "draft", False)
    assert invoice.id.startswith("in_") and invoice.number is None
    assert invoice.collection_method == "send_invoice"

    first = add_item(client, invoice.id, 1250, description="API calls")
    add_item(client, invoice.id, 750, description="Storage", metadata={"meter": "gb"})
    assert first.id.startswith("ii_") and first.invoice == invoice.id

    invoice = client.v1.invoices.retrieve(invoice.id)
    assert (invoice.subtotal, invoice.total, invoice.amount_due) == (2000, 2000, 2000)
    assert (invoice.amount_paid, invoice.amount_remaining) == (0, 2000)
    assert [line.amount for line in invoice.lines.data] == [1250, 750]
    items = client.v1.invoice_items.list(params={"invoice": invoice.id})
    assert sorted(i.amount for i in items.data) == [750, 1250]

    invoice = client.v1.invoices.finalize_invoice(invoice.id)
    assert invoice.status == "open" and invoice.number
    assert invoice.due_date == invoice.status_transitions.finalized_at + 30 * 86400

    line = invoice.lines.data[0]
    note = client.v1.credit_notes.create(
        params={
            "invoice": invoice.id,
            "lines": [{"type": "invoice_line_item", "invoice_line_item": line.id, "amount": 250}],
            "reason": "order_change",
            "memo": "Goodwill",
            "metadata": {"meterbook_credit_note": "3"},
        }
    )
    assert (note.object, note.amount, note.type, note.status) == (
        "credit_note",
        250,
        "pre_payment",
        "issued",
    )
    invoice = client.v1.invoices.retrieve(invoice.id)
    assert (invoice.total, invoice.amount_due, invoice.amount_remaining) == (2000, 1750, 1750)
    assert invoice.pre_payment_credit_notes_amount == 250
    assert [n.id for n in client.v1.credit_notes.list(params={"invoice": invoice.id}).data] == [
        note.id
    ]
    assert client.v1.credit_notes.retrieve(note.id).metadata["meterbook_credit_note"] == "3"

    invoice = client.v1.invoices.void_invoice(invoice.id)
    assert invoice.status == "void" and invoice.amount_remaining == 0
    assert invoice.status_transitions.voided_at


def test_state_rules_answer_400_like_stripe(stripe_env):
    client = stripe_env.client()
    invoice = draft(client)
    add_item(client, invoice.id, 1000, currency="usd")

    with pytest.raises(stripe.InvalidRequestError) as void_draft:
        client.v1.invoices.void_invoice(invoice.id)
    with pytest.raises(stripe.InvalidRequestError) as credit_draft:
        client.v1.credit_notes.create(params={"invoice": invoice.id, "amount": 100})
    client.v1.invoices.finalize_invoice(invoice.id)
    with pytest.raises(stripe.InvalidRequestError) as refinalize:
        client.v1.invoices.finalize_invoice(invoice.id)
    with pytest.raises(stripe.InvalidRequestError) as add_to_open:
        add_item(client, invoice.id, 10, currency="usd")
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        client.v1.credit_notes.create(params={"invoice": invoice.id, "amount": 1001})

    for caught in (void_draft, credit_draft, refinalize, add_to_open, too_much):
        assert caught.value.http_status == 400
        assert caught.value.json_body["error"]["type"] == "invalid_request_error"
    assert refinalize.value.code == "invoice_not_editable"
    assert too_much.value.json_body["error"]["param"] == "amount"
    assert client.v1.invoices.retrieve(invoice.id).amount_remaining == 1000


def test_unknown_ids_params_and_missing_params(stripe_env):
    client = stripe_env.client()
    with pytest.raises(stripe.InvalidRequestError) as unknown_id:
        client.v1.invoices.retrieve("in_missing")
    with pytest.raises(stripe.InvalidRequestError) as unknown_param:
        draft(client, colour="blue")
    with pytest.raises(stripe.InvalidRequestError) as no_terms:
        client.v1.invoices.create(params={"customer": "cus_x", "collection_method": "send_invoice"})

    assert (unknown_id.value.http_status, unknown_id.value.code) == (404, "resource_missing")
    assert unknown_id.value.json_body["error"]["param"] == "id"
    assert (unknown_param.value.code, unknown_param.value.param) == ("parameter_unknown", "colour")
    assert (no_terms.value.code, no_terms.value.param) == ("parameter_missing", "days_until_due")
    assert stripe_env.fake.invoices == []


def test_uncollectible_then_paid_out_of_band_then_post_payment_credit(stripe_env):
    client = stripe_env.client()
    invoice = draft(client)
    add_item(client, invoice.id, 5000, currency="usd")
    client.v1.invoices.finalize_invoice(invoice.id)

    invoice = client.v1.invoices.mark_uncollectible(invoice.id)
    assert invoice.status == "uncollectible"
    invoice = client.v1.invoices.pay(invoice.id, params={"paid_out_of_band": True})
    assert (invoice.status, invoice.amount_paid, invoice.amount_remaining) == ("paid", 5000, 0)
    assert invoice.paid_out_of_band is True

    note = client.v1.credit_notes.create(
        params={"invoice": invoice.id, "amount": 1200, "out_of_band_amount": 1200}
    )
    assert note.type == "post_payment" and note.out_of_band_amount == 1200
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.credit_notes.create(params={"invoice": invoice.id, "amount": 3801})
    invoice = client.v1.invoices.retrieve(invoice.id)
    assert invoice.post_payment_credit_notes_amount == 1200
    assert (invoice.total, invoice.amount_paid) == (5000, 5000)


def test_crediting_everything_left_on_an_open_invoice_marks_it_paid(stripe_env):
    client = stripe_env.client()
    invoice = draft(client)
    add_item(client, invoice.id, 900, currency="usd")
    client.v1.invoices.finalize_invoice(invoice.id)

    client.v1.credit_notes.create(
        params={
            "invoice": invoice.id,
            "lines": [{"type": "custom_line_item", "unit_amount": 300, "quantity": 3,
                       "description": "Outage credit"}],
        }
    )  # fmt: skip

    invoice = client.v1.invoices.retrieve(invoice.id)
    assert (invoice.status, invoice.amount_due, invoice.amount_remaining) == ("paid", 0, 0)


def test_pending_items_join_an_invoice_only_when_asked(stripe_env):
    client = stripe_env.client()
    client.v1.invoice_items.create(params={"customer": "cus_p", "amount": 400, "currency": "usd"})
    excluded = draft(client, customer="cus_p")
    included = draft(client, customer="cus_p", pending_invoice_items_behavior="include")

    assert excluded.total == 0
    assert included.total == 400
    assert client.v1.invoice_items.list(params={"pending": True}).data == []


def test_invoices_list_by_customer_with_pagination(stripe_env):
    client = stripe_env.client()
    ids = [draft(client, customer="cus_a").id for _ in range(3)]
    draft(client, customer="cus_b")

    page = client.v1.invoices.list(params={"customer": "cus_a", "limit": 2})
    rest = client.v1.invoices.list(
        params={"customer": "cus_a", "limit": 2, "starting_after": page.data[-1].id}
    )

    assert page.object == "list" and page.has_more is True
    assert [i.id for i in page.data + rest.data] == ids[::-1]
    assert rest.has_more is False


def test_metadata_update_on_draft_and_open(stripe_env):
    client = stripe_env.client()
    invoice = draft(client, metadata={"a": "1", "b": "2"})
    invoice = client.v1.invoices.update(
        invoice.id, params={"metadata": {"b": "", "c": "3"}, "description": "May usage"}
    )
    assert invoice.metadata.to_dict() == {"a": "1", "c": "3"}
    assert invoice.description == "May usage"

    client.v1.invoices.finalize_invoice(invoice.id)
    client.v1.invoices.update(invoice.id, params={"metadata": {"d": "4"}})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.update(invoice.id, params={"description": "too late"})


def test_idempotent_replay_returns_the_same_object_once(stripe_env):
    client = stripe_env.client()
    options = {"idempotency_key": "meterbook:invoice:1:create"}
    params = {"customer": "cus_i", **SEND_INVOICE}

    first = client.v1.invoices.create(params=params, options=options)
    again = client.v1.invoices.create(params=params, options=options)

    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert again.last_response.body == first.last_response.body
    assert "Idempotent-Replayed" not in first.last_response.headers
    assert len(stripe_env.fake.invoices) == 1
    assert [r.replayed for r in stripe_env.fake.requests] == [False, True]


def test_idempotency_key_reused_with_other_params_is_refused(stripe_env):
    client = stripe_env.client()
    options = {"idempotency_key": "meterbook:invoice:2:create"}
    client.v1.invoices.create(params={"customer": "cus_i", **SEND_INVOICE}, options=options)

    with pytest.raises(stripe.IdempotencyError) as caught:
        client.v1.invoices.create(params={"customer": "cus_other", **SEND_INVOICE}, options=options)

    assert caught.value.http_status == 400
    assert caught.value.json_body["error"]["type"] == "idempotency_error"
    assert len(stripe_env.fake.invoices) == 1


def test_idempotency_keys_are_per_api_key(stripe_env):
    options = {"idempotency_key": "meterbook:invoice:3:create"}
    params = {"customer": "cus_i", **SEND_INVOICE}
    one = stripe_env.client().v1.invoices.create(params=params, options=options)
    other_client = stripe.StripeClient(
        "sk_test_other_account", base_addresses={"api": stripe_env.proxy.url}
    )
    other = other_client.v1.invoices.create(params=params, options=options)

    assert other.id != one.id


def test_requests_without_an_api_key_are_refused(stripe_env):
    client = stripe.StripeClient("pk_test_publishable", base_addresses={"api": stripe_env.api_base})
    with pytest.raises(stripe.AuthenticationError):
        client.v1.invoices.list()


def test_proxy_answers_a_queued_fault_without_forwarding(stripe_env):
    client = stripe_env.client()
    fault = stripe_env.proxy.on("POST", r"^/v1/invoices$").respond(503)

    with pytest.raises(stripe.APIError) as caught:
        draft(client)
    draft(client)

    assert caught.value.http_status == 503
    assert fault.hits == 1 and stripe_env.proxy.pending_faults == []
    assert [(p.status, p.fault, p.upstream) for p in stripe_env.proxy.log] == [
        (503, "respond", None),
        (200, None, stripe_env.fake.url),
    ]
    assert len(stripe_env.fake.invoices) == 1


def test_proxy_drops_the_connection(stripe_env):
    client = stripe_env.client()
    stripe_env.proxy.on("GET", r"^/v1/invoices$").drop_connection()

    with pytest.raises(stripe.APIConnectionError) as caught:
        client.v1.invoices.list()

    assert caught.value.should_retry is True
    assert client.v1.invoices.list().data == []


def test_proxy_forward_then_hang_lets_the_request_take_effect(stripe_env):
    client = stripe.StripeClient(
        stripe_env.api_key,
        base_addresses={"api": stripe_env.api_base},
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=(1, 0.2)),
    )
    stripe_env.proxy.on("POST", r"^/v1/invoices$").forward_then_hang(2)

    with pytest.raises(stripe.APIConnectionError):
        draft(client)

    assert len(stripe_env.fake.invoices) == 1
    assert stripe_env.proxy.log[0].fault == "forward_then_hang"


def test_proxy_routes_by_its_table(stripe_env):
    from tests.stripe_servers.fault_proxy import FaultProxy

    proxy = FaultProxy(routes=[("", stripe_env.fake.url)])  # everything to the fake
    try:
        client = stripe.StripeClient(stripe_env.api_key, base_addresses={"api": proxy.url})
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.customers.list()
    finally:
        proxy.close()
    assert caught.value.http_status == 404  # the fake does not model customers


def test_fake_webhooks_verify_and_a_tampered_body_fails(stripe_env, webhook_receiver):
    client = stripe_env.client()
    invoice = draft(client)
    secret = stripe_env.webhook_secret

    delivery = stripe_env.fake.send_event(
        "invoice.finalized", stripe_env.fake.invoice(invoice.id), webhook_receiver.url, secret
    )
    got = webhook_receiver.wait_for()
    event = stripe.Webhook.construct_event(got.body, got.headers["stripe-signature"], secret)

    assert delivery.status == 200 and got.body == delivery.payload
    assert event.id == delivery.event_id and event.id.startswith("evt_")
    assert event.type == "invoice.finalized" and event.data.object.id == invoice.id
    tampered = got.body.replace(b'"draft"', b'"paid"')
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(tampered, got.headers["stripe-signature"], secret)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(got.body, got.headers["stripe-signature"], "whsec_wrong")


def test_fake_webhooks_can_be_duplicated_and_reordered(stripe_env, webhook_receiver):
    fake, secret = stripe_env.fake, stripe_env.webhook_secret
    invoice = draft(stripe_env.client())
    created = fake.build_event("invoice.created", fake.invoice(invoice.id))
    voided = fake.build_event("invoice.voided", {**fake.invoice(invoice.id), "status": "void"})

    for payload in (voided, created, voided):
        assert fake.deliver(payload, webhook_receiver.url, secret) == 200

    received = webhook_receiver.received
    events = [
        stripe.Webhook.construct_event(r.body, r.headers["stripe-signature"], secret)
        for r in received
    ]
    assert [e.type for e in events] == ["invoice.voided", "invoice.created", "invoice.voided"]
    assert events[0].id == events[2].id
    assert [e["id"] for e in fake.events] == [json.loads(created)["id"], events[0].id]


def test_localstripe_delivers_signed_webhooks(stripe_env, webhook_receiver):
    secret = "whsec_localstripe"
    stripe_env.localstripe.register_webhook(
        "meterbook-test", webhook_receiver.url, secret, events=["customer.created"]
    )
    try:
        customer = stripe_env.client().v1.customers.create(params={"email": "x@y.example.com"})
        got = webhook_receiver.wait_for(
            lambda r: r.json()["data"]["object"]["id"] == customer.id, timeout=10
        )
    finally:
        stripe_env.localstripe.disable_webhook("meterbook-test")

    event = stripe.Webhook.construct_event(got.body, got.headers["stripe-signature"], secret)
    assert event.type == "customer.created"
    assert event.data.object.email == "x@y.example.com"

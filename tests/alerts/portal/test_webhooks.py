"""The Webhooks page: everyone sees the endpoints; owners, admins and developers add, edit,
remove and rotate them; secrets stay masked until revealed; URL refusals show inline."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditLog
from accounts.roles import Role
from alerts import selectors, services
from alerts.models import WebhookEndpoint, WebhookSecret
from tests.accounts.portal.helpers import HTMX, member, row, signed_in

pytestmark = pytest.mark.django_db

WEBHOOKS = reverse("alerts:webhooks")
CREATE = reverse("alerts:webhook_create")
URL = "https://hooks.alpha.example.com/meterbook"
SECRET_RE = re.compile(r"whsec_[A-Za-z0-9+/=]{40,}")
MANAGERS = {Role.OWNER, Role.ADMIN, Role.DEVELOPER}
ALL = [Role.OWNER, Role.ADMIN, Role.DEVELOPER, Role.FINANCE, Role.VIEWER]


@pytest.fixture
def endpoint(customer_a):
    return services.endpoint_create(
        actor=None, customer=customer_a, url=URL, description="Ops pager"
    )


def edit_url(endpoint) -> str:
    return reverse("alerts:webhook_edit", args=[endpoint.pk])


@pytest.mark.parametrize("htmx", [True, False], ids=["htmx", "plain-post"])
def test_adding_an_endpoint_shows_its_secret_once_in_an_uncached_answer(
    client, customer_a, owner_a, htmx
):
    signed_in(client, owner_a)

    response = client.post(
        CREATE,
        {"url": URL, "description": "Ops", "personas": ["developer", "finance"]},
        headers=HTMX if htmx else {},
    )

    assert response.status_code == (200 if htmx else 201)
    assert "no-store" in response.headers["Cache-Control"]
    endpoint = WebhookEndpoint.objects.get()
    (secret,) = selectors.endpoint_signing_secrets(endpoint, timezone.now())
    body = response.content.decode()
    assert secret in body and SECRET_RE.findall(body) == [secret]
    assert (endpoint.customer, endpoint.personas) == (customer_a, ["developer", "finance"])
    assert AuditLog.objects.get(action="webhook_endpoint.created").actor_user == owner_a.user
    if htmx:
        assert 'id="endpoints-list" class="table-wrap" hx-swap-oob="true"' in body

    page = client.get(WEBHOOKS).content.decode()
    assert secret not in page and secret[:10] + "••" in page


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://10.0.0.7/hook",
            "Alerts cannot be sent to internal addresses: 10.0.0.7 is a private address.",
        ),
        (
            "http://localhost:8000/hook",
            "Alerts cannot be sent to internal addresses: 127.0.0.1 is a loopback address.",
        ),
        ("ftp://example.com/", "Only http and https, not &#x27;ftp&#x27;."),
        ("", "This field is required."),
    ],
)
def test_a_refused_url_is_explained_next_to_the_field(client, owner_a, settings, url, message):
    settings.ALERTS_OUTBOUND_ALLOWED_NETWORKS = []

    response = signed_in(client, owner_a).post(CREATE, {"url": url}, headers=HTMX)

    assert response.status_code == 422
    body = response.content.decode()
    assert body.lstrip().startswith('<div class="card" id="endpoint-form-card">')
    assert re.search(r'<p class="field-error">' + re.escape(message) + "</p>", body), body
    assert f'value="{url}"' in body or not url
    assert not WebhookEndpoint.objects.exists()


def test_a_duplicate_url_is_explained_on_the_page_without_htmx(client, owner_a, endpoint):
    response = signed_in(client, owner_a).post(CREATE, {"url": URL})

    assert response.status_code == 422
    assert "An endpoint with this URL already exists." in response.content.decode()
    assert WebhookEndpoint.objects.count() == 1


def test_editing_changes_the_endpoint_and_reenabling_clears_the_reason(client, owner_a, endpoint):
    services.endpoint_disable(endpoint, "The receiver answered 410 Gone.", timezone.now())
    signed_in(client, owner_a)
    page = client.get(WEBHOOKS).content.decode()
    assert "Disabled" in page and "The receiver answered 410 Gone." in page

    form = client.get(edit_url(endpoint), headers=HTMX).content.decode()
    assert f'value="{URL}"' in form and "Save endpoint" in form
    response = client.post(
        edit_url(endpoint),
        {"url": f"{URL}/v2", "description": "Pager", "enabled": "on"},
        headers=HTMX,
    )

    assert response.status_code == 200
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.enabled, endpoint.disabled_reason) == (f"{URL}/v2", True, "")
    assert "saved" in response.content.decode()


def test_editing_to_an_internal_url_keeps_the_old_one(client, owner_a, endpoint, settings):
    settings.ALERTS_OUTBOUND_ALLOWED_NETWORKS = []
    response = signed_in(client, owner_a).post(
        edit_url(endpoint), {"url": "http://169.254.169.254/", "enabled": "on"}, headers=HTMX
    )

    assert response.status_code == 422
    assert "169.254.169.254 is a metadata address" in response.content.decode()
    endpoint.refresh_from_db()
    assert endpoint.url == URL


def test_reveal_shows_the_secret_uncached_and_hide_masks_it_again(client, owner_a, endpoint):
    (secret,) = selectors.endpoint_signing_secrets(endpoint, timezone.now())
    signed_in(client, owner_a)
    secret_url = reverse("alerts:webhook_secret", args=[endpoint.pk])

    revealed = client.get(secret_url, headers=HTMX)
    hidden = client.get(secret_url, {"hide": 1}, headers=HTMX)

    assert secret in revealed.content.decode()
    assert "no-store" in revealed.headers["Cache-Control"]
    assert secret not in hidden.content.decode() and "Reveal" in hidden.content.decode()


def test_rotating_shows_the_new_secret_and_keeps_the_old_one_signing(client, owner_a, endpoint):
    (old,) = selectors.endpoint_signing_secrets(endpoint, timezone.now())
    signed_in(client, owner_a)
    rotate = reverse("alerts:webhook_rotate", args=[endpoint.pk])
    assert "Keep the old secret signing for" in client.get(rotate).content.decode()

    response = client.post(rotate, {"overlap_hours": "24"})

    new, previous = selectors.endpoint_signing_secrets(endpoint, timezone.now())
    assert previous == old and new != old
    body = response.content.decode()
    assert new in body and old not in body
    assert "no-store" in response.headers["Cache-Control"]
    assert "Old secret signs too until" in body
    assert AuditLog.objects.filter(action="webhook_endpoint.secret_rotated").count() == 1


def test_rotating_with_no_overlap_ends_the_old_secret(client, owner_a, endpoint):
    signed_in(client, owner_a).post(
        reverse("alerts:webhook_rotate", args=[endpoint.pk]), {"overlap_hours": "0"}
    )
    assert len(selectors.endpoint_signing_secrets(endpoint, timezone.now())) == 1


def test_a_bad_overlap_is_refused(client, owner_a, endpoint):
    response = signed_in(client, owner_a).post(
        reverse("alerts:webhook_rotate", args=[endpoint.pk]), {"overlap_hours": "9999"}
    )
    assert response.status_code == 422
    assert WebhookSecret.objects.count() == 1


def test_removing_an_endpoint_with_htmx_answers_with_the_list(client, owner_a, endpoint):
    response = signed_in(client, owner_a).post(
        reverse("alerts:webhook_delete", args=[endpoint.pk]), headers=HTMX
    )

    body = response.content.decode()
    assert body.lstrip().startswith('<div id="endpoints-list"') and "No endpoints yet" in body
    assert not WebhookEndpoint.objects.exists()
    assert AuditLog.objects.filter(action="webhook_endpoint.removed").exists()


@pytest.mark.parametrize("role", ALL)
def test_roles_without_manage_webhooks_see_but_cannot_change_or_reveal(
    client, customer_a, endpoint, role
):
    signed_in(client, member(customer_a, role))
    (secret,) = selectors.endpoint_signing_secrets(endpoint, timezone.now())
    before = row(WebhookEndpoint, endpoint.pk)
    can = role in MANAGERS

    page = client.get(WEBHOOKS)
    assert page.status_code == 200
    html = page.content.decode()
    assert URL in html and secret not in html
    assert ("Add an endpoint" in html) == can and ("Reveal" in html) == can
    nav_link = f'href="{WEBHOOKS}"'
    assert (nav_link in client.get(reverse("alerts:notifications")).content.decode()) == can

    expected = 200 if can else 403
    assert client.get(reverse("alerts:webhook_secret", args=[endpoint.pk])).status_code == expected
    assert client.get(edit_url(endpoint)).status_code == expected
    if not can:
        for url, data in (
            (CREATE, {"url": f"{URL}/x"}),
            (edit_url(endpoint), {"url": f"{URL}/x", "enabled": ""}),
            (reverse("alerts:webhook_rotate", args=[endpoint.pk]), {"overlap_hours": "0"}),
            (reverse("alerts:webhook_delete", args=[endpoint.pk]), {}),
        ):
            assert client.post(url, data, headers=HTMX).status_code == 403
        assert row(WebhookEndpoint, endpoint.pk) == before
        assert WebhookEndpoint.objects.count() == 1 and WebhookSecret.objects.count() == 1


def test_another_customers_endpoint_is_not_found(client, owner_a, customer_b):
    theirs = services.endpoint_create(actor=None, customer=customer_b, url=URL)
    signed_in(client, owner_a)

    for name in ("webhook_edit", "webhook_delete", "webhook_rotate", "webhook_secret"):
        url = reverse(f"alerts:{name}", args=[theirs.pk])
        assert client.get(url).status_code == 404
        assert client.post(
            url, {"url": "https://attacker.example.com/", "overlap_hours": "0"}
        ).status_code in (404, 405)
    assert URL not in client.get(WEBHOOKS).content.decode()
    assert WebhookSecret.objects.filter(endpoint=theirs).count() == 1
    assert WebhookEndpoint.objects.get(pk=theirs.pk).url == URL


def test_the_page_costs_the_same_queries_with_many_endpoints(
    client, customer_a, owner_a, django_assert_max_num_queries
):
    services.endpoint_create(actor=None, customer=customer_a, url=URL)
    signed_in(client, owner_a)
    client.get(WEBHOOKS)
    with django_assert_max_num_queries(8) as few:
        client.get(WEBHOOKS)
    for n in range(10):
        endpoint = services.endpoint_create(actor=None, customer=customer_a, url=f"{URL}/{n}")
        services.endpoint_rotate_secret(actor=None, endpoint=endpoint, overlap=timedelta(hours=1))
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = client.get(WEBHOOKS).content.decode()
    assert page.count('<tr id="endpoint-') == 11

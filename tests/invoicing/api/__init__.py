"""Helpers for the invoicing API tests: clients holding keys, and the API's paths."""

from accounts.models import ApiKey
from tests.accounts.api.support import api
from tests.accounts.factories import make_api_key

PLANS = "/api/v1/plans"
SUBSCRIPTIONS = "/api/v1/subscriptions"
INVOICES = "/api/v1/invoices"
CREDIT_NOTES = "/api/v1/credit-notes"


def operator():
    """A client holding a fresh operator key with every scope."""
    return api(make_api_key()[1])


def customer_client(customer, scopes=None):
    """A client holding a key of ``customer`` (every scope a customer key may hold)."""
    return api(make_api_key(customer=customer, scopes=scopes)[1])


def forced_customer_client(customer, scopes):
    """A customer key given ``scopes`` past the service's rules (operator-only ones too)."""
    key, token = make_api_key(customer=customer)
    ApiKey.objects.filter(pk=key.pk).update(scopes=list(scopes))
    return api(token)


def upcoming(external_id: str) -> str:
    return f"/api/v1/customers/{external_id}/upcoming-invoice"

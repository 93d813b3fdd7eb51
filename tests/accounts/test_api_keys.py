"""API keys: hashed storage, one-time display, prefixes, scopes, revocation, last use."""

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import services
from accounts.errors import InvalidInput
from accounts.models import ApiKey, AuditLog
from tests.accounts.factories import CustomerFactory, make_api_key

pytestmark = pytest.mark.django_db


def test_token_is_returned_once_and_only_its_digest_is_stored():
    key, token = make_api_key(customer=CustomerFactory())
    secret = token.rsplit("_", 1)[1]
    stored = ApiKey.objects.get(pk=key.pk)
    assert secret not in {stored.secret_hash, stored.key_id, stored.name}
    assert stored.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    # Nothing on the model can give the token back.
    assert all(secret not in str(getattr(stored, f.attname)) for f in ApiKey._meta.concrete_fields)


def test_prefix_tells_kind_and_environment():
    _, operator_live = make_api_key()
    _, customer_test = make_api_key(customer=CustomerFactory(), environment="test")
    assert operator_live.startswith("mb_live_op_")
    assert customer_test.startswith("mb_test_cu_")


def test_two_keys_never_share_a_token():
    tokens = {make_api_key()[1] for _ in range(20)}
    assert len(tokens) == 20


def test_authenticate_accepts_the_token_and_records_last_use():
    key, token = make_api_key()
    assert key.last_used_at is None
    assert services.api_key_authenticate(token).pk == key.pk
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_last_use_is_written_at_most_once_a_minute():
    key, token = make_api_key()
    services.api_key_authenticate(token)
    key.refresh_from_db()
    first = key.last_used_at
    services.api_key_authenticate(token)
    key.refresh_from_db()
    assert key.last_used_at == first
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=first - timedelta(minutes=2))
    services.api_key_authenticate(token)
    key.refresh_from_db()
    assert key.last_used_at > first - timedelta(minutes=2)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # wrong secret
        lambda t: t.replace("_live_", "_test_"),  # wrong environment
        lambda t: t.replace("_op_", "_cu_"),  # wrong kind
        lambda t: t[:-5],  # truncated
        lambda t: "sk_live_" + t,  # not ours
        lambda t: "",
    ],
)
def test_tampered_tokens_are_rejected(mangle):
    _, token = make_api_key()
    with pytest.raises(services.ApiKeyRejected):
        services.api_key_authenticate(mangle(token))


def test_revoked_key_is_refused_on_next_use_and_revocation_is_audited():
    key, token = make_api_key()
    services.api_key_authenticate(token)
    services.api_key_revoke(actor=None, api_key=key)
    with pytest.raises(services.ApiKeyRejected, match="revoked"):
        services.api_key_authenticate(token)
    entry = AuditLog.objects.get(action="api_key.revoked", object_id=str(key.pk))
    assert entry.before == {"revoked_at": None}
    assert entry.after["revoked_at"]


def test_revoking_twice_keeps_the_first_revocation_and_one_audit_record():
    key, _ = make_api_key()
    services.api_key_revoke(actor=None, api_key=key)
    first = ApiKey.objects.get(pk=key.pk).revoked_at
    services.api_key_revoke(actor=None, api_key=key)
    assert ApiKey.objects.get(pk=key.pk).revoked_at == first
    assert AuditLog.objects.filter(action="api_key.revoked", object_id=str(key.pk)).count() == 1


def test_creation_is_audited_without_the_secret():
    key, token = make_api_key(scopes=["usage:read"], customer=CustomerFactory())
    entry = AuditLog.objects.get(action="api_key.created", object_id=str(key.pk))
    assert entry.after == {"prefix": key.prefix, "name": key.name, "scopes": ["usage:read"]}
    assert token.rsplit("_", 1)[1] not in str(entry.after)


@pytest.mark.parametrize(
    ("kwargs", "field", "code"),
    [
        ({"scopes": []}, "scopes", "invalid"),
        ({"scopes": ["usage:read", "billing:everything"]}, "scopes", "unknown_scope"),
        ({"scopes": ["events:write"]}, "scopes", "scope_not_allowed"),
        ({"scopes": ["customers:write"]}, "scopes", "scope_not_allowed"),
        ({"name": "   "}, "name", "invalid"),
        ({"environment": "prod"}, "environment", "invalid"),
    ],
)
def test_customer_key_input_is_validated(kwargs, field, code):
    params = {
        "actor": None,
        "name": "ci",
        "kind": "cu",
        "scopes": ["usage:read"],
        "customer": CustomerFactory(),
    }
    params.update(kwargs)
    with pytest.raises(InvalidInput) as excinfo:
        services.api_key_create(**params)
    assert (excinfo.value.field, excinfo.value.code) == (field, code)
    assert not ApiKey.objects.exists()


def test_kind_and_customer_must_agree():
    customer = CustomerFactory()
    with pytest.raises(InvalidInput):
        services.api_key_create(actor=None, name="x", kind="cu", scopes=["usage:read"])
    with pytest.raises(InvalidInput):
        services.api_key_create(
            actor=None, name="x", kind="op", scopes=["usage:read"], customer=customer
        )


def test_operator_keys_may_hold_operator_only_scopes():
    key, _ = make_api_key(scopes=["events:write", "customers:write"])
    assert key.scopes == ["customers:write", "events:write"]


def test_revocation_timestamp_is_now():
    key, _ = make_api_key()
    before = timezone.now()
    services.api_key_revoke(actor=None, api_key=key)
    assert before <= ApiKey.objects.get(pk=key.pk).revoked_at <= timezone.now()

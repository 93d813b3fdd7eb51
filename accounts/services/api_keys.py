"""API keys: created once (token shown once, only its digest kept), revoked at once."""

import hashlib
import re
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare, get_random_string

from ..errors import InvalidInput
from ..models import ApiKey, Customer, User
from ..scopes import SCOPES
from .audit import (
    Actor,
    audit_record,
    jsonable,
)

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KEY_ID_LENGTH = 12
SECRET_LENGTH = 40  # ~238 bits of entropy
TOKEN_RE = re.compile(
    rf"^mb_(?P<environment>live|test)_(?P<kind>op|cu)_(?P<key_id>[0-9A-Za-z]{{{KEY_ID_LENGTH}}})_"
    rf"(?P<secret>[0-9A-Za-z]{{{SECRET_LENGTH}}})$"
)
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _secret_digest(secret: str) -> str:
    # A random 238-bit secret needs no slow password hash: SHA-256 is not reversible and
    # keeps per-request authentication cheap. Comparison is constant-time (see below).
    return hashlib.sha256(secret.encode()).hexdigest()


@transaction.atomic
def api_key_create(
    *,
    actor: Actor,
    name: str,
    kind: str,
    scopes: list[str],
    customer: Customer | None = None,
    environment: str = ApiKey.Environment.LIVE,
) -> tuple[ApiKey, str]:
    """Create a key and return it with its token; the token is never retrievable again."""
    if kind not in ApiKey.Kind.values:
        raise InvalidInput(f"{kind!r} is not a key kind.", field="kind")
    if environment not in ApiKey.Environment.values:
        raise InvalidInput(
            f"{environment!r} is not an environment (live or test).", field="environment"
        )
    if kind == ApiKey.Kind.CUSTOMER and customer is None:
        raise InvalidInput("A customer key belongs to one customer.", field="customer")
    if kind == ApiKey.Kind.OPERATOR and customer is not None:
        raise InvalidInput("An operator key is vendor-wide and has no customer.", field="customer")
    name = (name or "").strip()
    if not name:
        raise InvalidInput("Give the key a name so you can recognise it later.", field="name")
    scopes = sorted(set(scopes))
    if not scopes:
        raise InvalidInput("Choose at least one scope.", field="scopes")
    for scope in scopes:
        if scope not in SCOPES:
            raise InvalidInput(f"{scope!r} is not a scope.", code="unknown_scope", field="scopes")
        if SCOPES[scope].operator_only and kind != ApiKey.Kind.OPERATOR:
            raise InvalidInput(
                f"{scope} is for operator keys only.", code="scope_not_allowed", field="scopes"
            )
    secret = get_random_string(SECRET_LENGTH, _BASE62)
    key = ApiKey.objects.create(
        name=name[:100],
        kind=kind,
        environment=environment,
        customer=customer,
        key_id=get_random_string(KEY_ID_LENGTH, _BASE62),
        secret_hash=_secret_digest(secret),
        scopes=scopes,
        created_by=actor if isinstance(actor, User) else None,
    )
    audit_record(
        actor=actor,
        action="api_key.created",
        obj=key,
        customer=customer,
        after={"prefix": key.prefix, "name": key.name, "scopes": scopes},
    )
    return key, f"{key.prefix}_{secret}"


@transaction.atomic
def api_key_revoke(*, actor: Actor, api_key: ApiKey) -> ApiKey:
    """Revoke at once; the next request with it fails. Revoking twice changes nothing."""
    now = timezone.now()
    changed = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
        revoked_at=now, revoked_by=actor if isinstance(actor, User) else None
    )
    api_key.refresh_from_db()
    if changed:
        audit_record(
            actor=actor,
            action="api_key.revoked",
            obj=api_key,
            customer=api_key.customer,
            before={"revoked_at": None},
            after={"revoked_at": jsonable(now)},
        )
    return api_key


class ApiKeyRejected(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def api_key_authenticate(token: str) -> ApiKey:
    """The active key a bearer token names, or ``ApiKeyRejected`` saying why not."""
    match = TOKEN_RE.match(token or "")
    if not match:
        raise ApiKeyRejected("The API key is malformed; it should look like mb_live_cu_….")
    try:
        # .get(), not .first(): no ORDER BY on a unique lookup that runs on every request.
        key = ApiKey.objects.select_related("customer").get(key_id=match["key_id"])
    except ApiKey.DoesNotExist:
        key = None
    if (
        key is None
        or key.kind != match["kind"]
        or key.environment != match["environment"]
        or not constant_time_compare(key.secret_hash, _secret_digest(match["secret"]))
    ):
        raise ApiKeyRejected("The API key is not valid.")
    if key.revoked_at is not None:
        raise ApiKeyRejected("The API key was revoked.")
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        # At most one write per key per minute, and never backwards.
        ApiKey.objects.filter(pk=key.pk).exclude(
            last_used_at__gte=now - LAST_USED_RESOLUTION
        ).update(last_used_at=now)
        key.last_used_at = now
    return key

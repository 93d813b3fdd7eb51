"""Writes for accounts: customers, team membership, contacts, API keys, the audit log.

Every function here is keyword-only, runs in one transaction, and records an audit entry
for each change it makes. Permission rules that are business rules (the last owner stays)
live here; which portal role may reach a page is checked by the view via ``roles``.
"""

import hashlib
import json
import re
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare, get_random_string

from .errors import Conflict, Forbidden, InvalidInput, NotFound
from .models import ApiKey, AuditLog, Contact, Customer, Membership, User
from .roles import Role
from .scopes import SCOPES

Actor = User | ApiKey | None

# --- Audit ---------------------------------------------------------------------------


def _jsonable(value):
    """Dates, decimals and UUIDs as the JSON the audit log stores."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def snapshot(instance, fields) -> dict:
    """The named fields of a model instance as JSON-safe values (for audit before/after)."""
    data = {}
    for name in fields:
        value = getattr(instance, name)
        if hasattr(value, "pk"):
            value = value.pk
        data[name] = _jsonable(value)
    return data


def actor_label(actor: Actor) -> str:
    if isinstance(actor, User):
        return actor.email
    if isinstance(actor, ApiKey):
        return f"api key {actor.prefix} ({actor.name})"
    return "system"


def audit_record(
    *, actor: Actor, action: str, obj, customer: Customer | None, before=None, after=None
) -> AuditLog:
    return AuditLog.objects.create(
        actor_user=actor if isinstance(actor, User) else None,
        actor_api_key=actor if isinstance(actor, ApiKey) else None,
        actor_label=actor_label(actor)[:200],
        customer=customer,
        action=action,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        object_repr=str(obj)[:300],
        before=before,
        after=after,
    )


def _changed(before: dict, after: dict) -> tuple[dict, dict]:
    keys = [k for k in after if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after[k] for k in keys}


def _full_clean(instance, *, exclude=None) -> None:
    """Model validation as a last line of defence; the first problem becomes InvalidInput."""
    try:
        instance.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise InvalidInput(messages[0], field=None if field == "__all__" else field) from exc


# --- Customers -----------------------------------------------------------------------

CUSTOMER_AUDIT_FIELDS = ("name", "external_id", "currency", "timezone", "billing_email", "status")
CUSTOMER_UPDATABLE_FIELDS = frozenset(CUSTOMER_AUDIT_FIELDS)


def _save_customer(customer: Customer) -> None:
    try:
        with transaction.atomic():
            customer.save()
    except IntegrityError as exc:
        if "external_id" in str(exc):
            raise Conflict(
                f"A customer with external_id {customer.external_id!r} already exists.",
                code="external_id_conflict",
                field="external_id",
            ) from exc
        raise


@transaction.atomic
def customer_create(
    *,
    actor: Actor,
    name: str,
    external_id: str,
    billing_email: str,
    currency: str = "USD",
    timezone: str = "UTC",
    status: str = Customer.Status.ACTIVE,
) -> Customer:
    customer = Customer(
        name=name,
        external_id=external_id,
        billing_email=billing_email,
        currency=currency,
        timezone=timezone,
        status=status,
    )
    _full_clean(customer)
    _save_customer(customer)
    audit_record(
        actor=actor,
        action="customer.created",
        obj=customer,
        customer=customer,
        after=snapshot(customer, CUSTOMER_AUDIT_FIELDS),
    )
    return customer


@transaction.atomic
def customer_update(*, actor: Actor, customer: Customer, **changes) -> Customer:
    unknown = set(changes) - CUSTOMER_UPDATABLE_FIELDS
    if unknown:
        raise InvalidInput(
            f"{sorted(unknown)[0]} cannot be changed.",
            code="unknown_field",
            field=sorted(unknown)[0],
        )
    customer = Customer.objects.select_for_update().get(pk=customer.pk)
    before = snapshot(customer, CUSTOMER_AUDIT_FIELDS)
    for name, value in changes.items():
        setattr(customer, name, value)
    _full_clean(customer)
    old, new = _changed(before, snapshot(customer, CUSTOMER_AUDIT_FIELDS))
    if not new:
        return customer
    _save_customer(customer)
    audit_record(
        actor=actor,
        action="customer.updated",
        obj=customer,
        customer=customer,
        before=old,
        after=new,
    )
    return customer


# --- Team: invitations, roles, removal -----------------------------------------------

INVITATION_SALT = "accounts.invitation"


def _guard_last_owner(membership: Membership, message: str) -> None:
    """Refuse to take away the customer's last accepted owner."""
    if membership.role != Role.OWNER or membership.is_pending:
        return
    # Lock the customer's owners so two concurrent demotions cannot both pass the count.
    list(
        Membership.objects.select_for_update().filter(
            customer_id=membership.customer_id, role=Role.OWNER
        )
    )
    if _owner_count(membership.customer_id) <= 1:
        raise Conflict(message, code="last_owner")


def _owner_count(customer_id: int) -> int:
    return Membership.objects.filter(
        customer_id=customer_id, role=Role.OWNER, accepted_at__isnull=False
    ).count()


def _require_may_manage(
    actor_membership: Membership, target_role: str, new_role: str | None = None
) -> None:
    """Admins manage the team, but only owners may touch an owner or make one."""
    if actor_membership.role == Role.OWNER:
        return
    if Role.OWNER in (target_role, new_role):
        raise Forbidden("Only an owner can change, add or remove an owner.", code="owner_required")


def _lock_teammate(actor: User, membership: Membership) -> Membership:
    """Lock the target membership, which must be in the actor's own customer.

    The portal already looks it up through the tenancy choke point; this keeps the service
    safe on its own and turns a member removed meanwhile into a clear 404, not a crash.
    """
    locked = (
        Membership.objects.select_for_update()
        .select_related("customer", "user")
        .filter(pk=membership.pk, customer_id=actor.membership.customer_id)
        .first()
    )
    if locked is None:
        raise NotFound("That member is no longer part of this team.", code="member_not_found")
    return locked


@transaction.atomic
def member_invite(*, actor: User, customer: Customer, email: str, role: str) -> Membership:
    if role not in Role.values:
        raise InvalidInput(f"{role!r} is not a role.", field="role")
    _require_may_manage(actor.membership, role)
    email = User.objects.normalize_email(email).strip().lower()
    user = User.objects.select_for_update().filter(email__iexact=email).first()
    if user is not None:
        if user.is_staff:
            raise Conflict(
                f"{email} is a staff account and cannot join a customer.",
                code="email_taken",
                field="email",
            )
        existing = Membership.objects.filter(user=user).select_related("customer").first()
        if existing is not None:
            where = "this team" if existing.customer_id == customer.pk else "another customer"
            raise Conflict(
                f"{email} is already a member of {where}.", code="email_taken", field="email"
            )
        user.is_active = True
        user.set_unusable_password()
        user.save(update_fields=["is_active", "password"])
    else:
        user = User.objects.create_user(email=email, password=None)
    membership = Membership.objects.create(
        user=user, customer=customer, role=role, invited_by=actor, invited_at=timezone.now()
    )
    audit_record(
        actor=actor,
        action="membership.invited",
        obj=membership,
        customer=customer,
        after={"email": email, "role": role},
    )
    _enqueue_invitation(membership)
    return membership


def _enqueue_invitation(membership: Membership) -> None:
    from .tasks import send_invitation  # tasks import services; import here to avoid a cycle

    transaction.on_commit(lambda: send_invitation.delay(membership.pk))


@transaction.atomic
def member_resend_invitation(*, actor: User, membership: Membership) -> Membership:
    membership = _lock_teammate(actor, membership)
    _require_may_manage(actor.membership, membership.role)
    if not membership.is_pending:
        raise Conflict("This member has already accepted the invitation.", code="already_accepted")
    Membership.objects.filter(pk=membership.pk).update(
        invited_at=timezone.now(), invitation_sent_at=None
    )
    membership.refresh_from_db()
    audit_record(
        actor=actor,
        action="membership.invitation_resent",
        obj=membership,
        customer=membership.customer,
    )
    _enqueue_invitation(membership)
    return membership


def invitation_token(membership: Membership) -> str:
    # invited_at is part of the token, so resending an invitation invalidates the old link.
    return signing.dumps(
        {"m": membership.pk, "at": membership.invited_at.timestamp()}, salt=INVITATION_SALT
    )


def invitation_from_token(token: str) -> Membership:
    max_age = timedelta(days=settings.INVITATION_TTL_DAYS)
    try:
        data = signing.loads(token, salt=INVITATION_SALT, max_age=max_age)
    except signing.SignatureExpired as exc:
        raise InvalidInput(
            "This invitation has expired; ask for a new one.", code="invitation_expired"
        ) from exc
    except signing.BadSignature as exc:
        raise NotFound("This invitation link is not valid.", code="invitation_invalid") from exc
    membership = (
        Membership.objects.select_related("user", "customer").filter(pk=data.get("m")).first()
    )
    if (
        membership is None
        or membership.invited_at is None
        or membership.invited_at.timestamp() != data.get("at")
    ):
        raise NotFound("This invitation link is not valid.", code="invitation_invalid")
    if not membership.is_pending:
        raise Conflict(
            "This invitation was already accepted; log in instead.", code="already_accepted"
        )
    return membership


@transaction.atomic
def invitation_accept(*, token: str, password: str) -> Membership:
    membership = invitation_from_token(token)
    membership = (
        Membership.objects.select_for_update()
        .select_related("user", "customer")
        .get(pk=membership.pk)
    )
    if not membership.is_pending:
        raise Conflict(
            "This invitation was already accepted; log in instead.", code="already_accepted"
        )
    try:
        validate_password(password, user=membership.user)
    except ValidationError as exc:
        raise InvalidInput(" ".join(exc.messages), code="weak_password", field="password") from exc
    membership.user.set_password(password)
    membership.user.save(update_fields=["password"])
    membership.accepted_at = timezone.now()
    membership.save(update_fields=["accepted_at"])
    audit_record(
        actor=membership.user,
        action="membership.accepted",
        obj=membership,
        customer=membership.customer,
    )
    return membership


def invitation_send(*, membership_id: int) -> bool:
    """Email the invitation link once. Safe to run twice: the send is claimed first.

    Returns whether an email was sent by this call.
    """
    claimed = Membership.objects.filter(
        pk=membership_id, accepted_at__isnull=True, invitation_sent_at__isnull=True
    ).update(invitation_sent_at=timezone.now())
    if not claimed:
        return False
    membership = Membership.objects.select_related("user", "customer", "invited_by").get(
        pk=membership_id
    )
    link = settings.PUBLIC_BASE_URL.rstrip("/") + reverse(
        "portal:invitation_accept", kwargs={"token": invitation_token(membership)}
    )
    context = {"membership": membership, "link": link, "ttl_days": settings.INVITATION_TTL_DAYS}
    try:
        send_mail(
            subject=f"You're invited to {membership.customer.name} on Meterbook",
            message=render_to_string("accounts/email/invitation.txt", context),
            from_email=None,
            recipient_list=[membership.user.email],
        )
    except Exception:
        # Release the claim so the task's retry sends it; never leave it marked sent.
        Membership.objects.filter(pk=membership_id).update(invitation_sent_at=None)
        raise
    return True


def invitations_unsent_ids(*, grace: timedelta = timedelta(minutes=2)) -> list[int]:
    """Pending invitations not emailed within ``grace`` of being made: the sweep's work list."""
    return list(
        Membership.objects.filter(
            accepted_at__isnull=True,
            invitation_sent_at__isnull=True,
            invited_at__lt=timezone.now() - grace,
        ).values_list("pk", flat=True)[:500]
    )


@transaction.atomic
def member_change_role(*, actor: User, membership: Membership, role: str) -> Membership:
    if role not in Role.values:
        raise InvalidInput(f"{role!r} is not a role.", field="role")
    membership = _lock_teammate(actor, membership)
    if membership.role == role:
        return membership
    _require_may_manage(actor.membership, membership.role, role)
    _guard_last_owner(
        membership, "A customer needs at least one owner; make someone else owner first."
    )
    before = {"role": membership.role}
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(
        actor=actor,
        action="membership.role_changed",
        obj=membership,
        customer=membership.customer,
        before=before,
        after={"role": role},
    )
    return membership


@transaction.atomic
def member_remove(*, actor: User, membership: Membership) -> None:
    membership = _lock_teammate(actor, membership)
    _require_may_manage(actor.membership, membership.role)
    _guard_last_owner(membership, "The last owner cannot be removed.")
    user = membership.user
    audit_record(
        actor=actor,
        action="membership.removed",
        obj=membership,
        customer=membership.customer,
        before={"email": user.email, "role": membership.role},
        after=None,
    )
    membership.delete()
    # The user row stays (audit and key history point at it) but can no longer log in.
    user.is_active = False
    user.set_unusable_password()
    user.save(update_fields=["is_active", "password"])


# --- Contacts ------------------------------------------------------------------------

CONTACT_FIELDS = (
    "name",
    "persona",
    "email",
    "slack_webhook_url",
    "teams_webhook_url",
    "webhook_url",
    "user",
)


def _save_contact(contact: Contact) -> None:
    try:
        with transaction.atomic():
            contact.save()
    except IntegrityError as exc:
        if "contact_unique_email_per_customer" in str(exc):
            raise Conflict(
                f"Another contact of this customer already uses {contact.email}.",
                code="duplicate_email",
                field="email",
            ) from exc
        raise


def _check_contact_user(contact: Contact) -> None:
    if (
        contact.user_id
        and not Membership.objects.filter(
            user_id=contact.user_id, customer_id=contact.customer_id
        ).exists()
    ):
        raise InvalidInput("The linked user must be a member of the same customer.", field="user")


@transaction.atomic
def contact_create(*, actor: Actor, customer: Customer, **fields) -> Contact:
    unknown = set(fields) - set(CONTACT_FIELDS)
    if unknown:
        raise InvalidInput(
            f"{sorted(unknown)[0]} is not a contact field.",
            code="unknown_field",
            field=sorted(unknown)[0],
        )
    contact = Contact(customer=customer, **fields)
    contact.email = contact.email.strip().lower()
    if not contact.channels:
        raise InvalidInput(
            "Give at least one channel: an email address or a webhook URL.", code="no_channel"
        )
    _check_contact_user(contact)
    _full_clean(contact)
    _save_contact(contact)
    audit_record(
        actor=actor,
        action="contact.created",
        obj=contact,
        customer=customer,
        after=snapshot(contact, CONTACT_FIELDS),
    )
    return contact


@transaction.atomic
def contact_update(*, actor: Actor, contact: Contact, **changes) -> Contact:
    unknown = set(changes) - set(CONTACT_FIELDS)
    if unknown:
        raise InvalidInput(
            f"{sorted(unknown)[0]} is not a contact field.",
            code="unknown_field",
            field=sorted(unknown)[0],
        )
    contact = Contact.objects.select_for_update().select_related("customer").get(pk=contact.pk)
    before = snapshot(contact, CONTACT_FIELDS)
    for name, value in changes.items():
        setattr(contact, name, value)
    contact.email = contact.email.strip().lower()
    if not contact.channels:
        raise InvalidInput(
            "Give at least one channel: an email address or a webhook URL.", code="no_channel"
        )
    _check_contact_user(contact)
    _full_clean(contact)
    old, new = _changed(before, snapshot(contact, CONTACT_FIELDS))
    if not new:
        return contact
    _save_contact(contact)
    audit_record(
        actor=actor,
        action="contact.updated",
        obj=contact,
        customer=contact.customer,
        before=old,
        after=new,
    )
    return contact


@transaction.atomic
def contact_delete(*, actor: Actor, contact: Contact) -> None:
    audit_record(
        actor=actor,
        action="contact.deleted",
        obj=contact,
        customer=contact.customer,
        before=snapshot(contact, CONTACT_FIELDS),
    )
    contact.delete()


# --- API keys ------------------------------------------------------------------------

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
            after={"revoked_at": _jsonable(now)},
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


# --- Staff groups ------------------------------------------------------------------------

# Admin permissions each staff group holds: (app_label, model, actions).
STAFF_GROUP_PERMISSIONS: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    "finance": [
        ("accounts", "customer", ("view", "change")),
        ("accounts", "contact", ("view",)),
        ("accounts", "membership", ("view",)),
        ("accounts", "apikey", ("view",)),
        ("accounts", "auditlog", ("view",)),
        ("metering", "meter", ("view",)),
        ("metering", "usageevent", ("view",)),
        ("metering", "usagediscrepancy", ("view",)),
        ("metering", "usagereconciliationrun", ("view",)),
        ("metering", "customerusagestate", ("view",)),
    ],
    "csm": [
        ("accounts", "customer", ("view",)),
        ("accounts", "contact", ("view", "add", "change")),
        ("accounts", "membership", ("view",)),
        ("accounts", "auditlog", ("view",)),
        ("metering", "meter", ("view",)),
        ("metering", "usageevent", ("view",)),
        ("metering", "customerusagestate", ("view",)),
    ],
    "support": [
        ("accounts", "customer", ("view",)),
        ("accounts", "contact", ("view",)),
        ("accounts", "membership", ("view",)),
        ("accounts", "apikey", ("view", "change")),
        ("accounts", "auditlog", ("view",)),
        ("metering", "meter", ("view",)),
        ("metering", "usageevent", ("view",)),
        ("metering", "customerusagestate", ("view",)),
    ],
}


@transaction.atomic
def staff_groups_sync() -> None:
    """Create the staff groups and set exactly their declared permissions (idempotent)."""
    from django.contrib.auth.models import Group, Permission

    for group_name, grants in STAFF_GROUP_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        codenames = [
            (app_label, f"{action}_{model}")
            for app_label, model, actions in grants
            for action in actions
        ]
        permissions = []
        for app_label, codename in codenames:
            permission = Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if permission is None:
                raise LookupError(
                    f"Permission {app_label}.{codename} does not exist; run migrate first."
                )
            permissions.append(permission)
        group.permissions.set(permissions)

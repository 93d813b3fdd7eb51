"""A customer's team: invitations, roles and removal; the last owner always stays."""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from ..errors import Conflict, Forbidden, InvalidInput, NotFound
from ..models import Customer, Membership, User
from ..roles import Role
from .audit import audit_record

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
    from ..tasks import send_invitation  # tasks import services; import here to avoid a cycle

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

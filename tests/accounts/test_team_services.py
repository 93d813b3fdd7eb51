"""Team membership rules: invitations, roles, the last owner, and their audit trail."""

import pytest
from django.core import mail, signing

from accounts import services
from accounts.errors import Conflict, Forbidden, InvalidInput, NotFound
from accounts.models import AuditLog, Membership, User
from tests.accounts.factories import CustomerFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(customer_a, owner_a):
    admin = MembershipFactory(customer=customer_a, role="admin")
    dev = MembershipFactory(customer=customer_a, role="developer")
    return {"owner": owner_a, "admin": admin, "dev": dev}


def invite(actor_membership, email="new@alpha.example.com", role="developer"):
    return services.member_invite(
        actor=actor_membership.user, customer=actor_membership.customer, email=email, role=role
    )


def test_invitation_creates_pending_member_who_cannot_log_in_yet(
    team, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        membership = invite(team["admin"], email="New.Person@Alpha.example.com")
    assert membership.is_pending
    assert membership.user.email == "new.person@alpha.example.com"
    assert not membership.user.has_usable_password()
    assert len(mail.outbox) == 1
    assert "/invitations/" in mail.outbox[0].body
    entry = AuditLog.objects.get(action="membership.invited")
    assert entry.after == {"email": "new.person@alpha.example.com", "role": "developer"}
    assert entry.actor_user_id == team["admin"].user_id


def test_invitation_email_is_sent_once_even_if_the_task_runs_twice(
    team, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        membership = invite(team["owner"])
    assert services.invitation_send(membership_id=membership.pk) is False
    assert len(mail.outbox) == 1


def test_accepting_sets_the_password_and_a_used_link_cannot_be_replayed(team):
    membership = invite(team["owner"])
    token = services.invitation_token(membership)
    services.invitation_accept(token=token, password="a long and unusual passphrase 9")
    membership.refresh_from_db()
    assert not membership.is_pending
    assert membership.user.check_password("a long and unusual passphrase 9")
    with pytest.raises(Conflict):
        services.invitation_accept(token=token, password="another long passphrase 10")


def test_weak_password_is_refused_and_the_invitation_stays_pending(team):
    membership = invite(team["owner"])
    with pytest.raises(InvalidInput) as excinfo:
        services.invitation_accept(token=services.invitation_token(membership), password="123")
    assert excinfo.value.field == "password"
    membership.refresh_from_db()
    assert membership.is_pending


def test_resending_invalidates_the_previous_link(team, django_capture_on_commit_callbacks):
    membership = invite(team["owner"])
    old_token = services.invitation_token(membership)
    with django_capture_on_commit_callbacks(execute=True):
        services.member_resend_invitation(actor=team["owner"].user, membership=membership)
    with pytest.raises(NotFound):
        services.invitation_from_token(old_token)
    membership.refresh_from_db()
    assert services.invitation_from_token(services.invitation_token(membership)).pk == membership.pk


def test_expired_or_forged_links_are_refused(team, settings):
    membership = invite(team["owner"])
    token = services.invitation_token(membership)
    settings.INVITATION_TTL_DAYS = -1
    with pytest.raises(InvalidInput) as excinfo:
        services.invitation_from_token(token)
    assert excinfo.value.code == "invitation_expired"
    forged = signing.dumps({"m": membership.pk, "at": 0}, salt="something else")
    with pytest.raises(NotFound):
        services.invitation_from_token(forged)


def test_an_email_can_belong_to_only_one_customer(team, owner_b):
    with pytest.raises(Conflict) as excinfo:
        invite(team["owner"], email=owner_b.user.email)
    assert excinfo.value.field == "email"
    with pytest.raises(Conflict):
        invite(team["owner"], email=team["dev"].user.email.upper())
    staff = UserFactory(is_staff=True)
    with pytest.raises(Conflict):
        invite(team["owner"], email=staff.email)


def test_only_owners_add_or_touch_owners(team):
    with pytest.raises(Forbidden):
        invite(team["admin"], role="owner")
    with pytest.raises(Forbidden):
        services.member_change_role(
            actor=team["admin"].user, membership=team["owner"], role="viewer"
        )
    with pytest.raises(Forbidden):
        services.member_remove(actor=team["admin"].user, membership=team["owner"])
    with pytest.raises(Forbidden):
        services.member_change_role(actor=team["admin"].user, membership=team["dev"], role="owner")
    services.member_change_role(actor=team["owner"].user, membership=team["dev"], role="owner")
    assert Membership.objects.get(pk=team["dev"].pk).role == "owner"


def test_last_owner_can_be_neither_demoted_nor_removed(team):
    with pytest.raises(Conflict) as excinfo:
        services.member_change_role(
            actor=team["owner"].user, membership=team["owner"], role="admin"
        )
    assert excinfo.value.code == "last_owner"
    with pytest.raises(Conflict):
        services.member_remove(actor=team["owner"].user, membership=team["owner"])
    assert Membership.objects.get(pk=team["owner"].pk).role == "owner"


def test_with_two_owners_one_may_step_down(team):
    services.member_change_role(actor=team["owner"].user, membership=team["admin"], role="owner")
    services.member_change_role(actor=team["owner"].user, membership=team["owner"], role="viewer")
    assert Membership.objects.get(pk=team["owner"].pk).role == "viewer"


def test_role_change_is_audited_with_before_and_after(team):
    services.member_change_role(actor=team["admin"].user, membership=team["dev"], role="finance")
    entry = AuditLog.objects.get(action="membership.role_changed")
    assert (entry.before, entry.after) == ({"role": "developer"}, {"role": "finance"})
    assert entry.customer_id == team["dev"].customer_id


def test_removed_member_cannot_log_in_and_may_be_invited_again(team):
    user = team["dev"].user
    services.member_remove(actor=team["admin"].user, membership=team["dev"])
    user.refresh_from_db()
    assert not user.is_active and not user.has_usable_password()
    assert not Membership.objects.filter(user=user).exists()
    assert AuditLog.objects.filter(action="membership.removed", before__email=user.email).exists()
    again = invite(team["owner"], email=user.email)
    assert again.user_id == user.pk and User.objects.get(pk=user.pk).is_active


def test_unknown_role_is_refused(team):
    with pytest.raises(InvalidInput):
        invite(team["owner"], role="superuser")
    with pytest.raises(InvalidInput):
        services.member_change_role(actor=team["owner"].user, membership=team["dev"], role="root")


def test_unsent_invitations_are_found_by_the_sweep(team, django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone

    pending = invite(team["owner"])  # on_commit not run: the email never went out
    Membership.objects.filter(pk=pending.pk).update(
        invited_at=timezone.now() - timedelta(minutes=10)
    )
    assert services.invitations_unsent_ids() == [pending.pk]
    from accounts.tasks import sweep_unsent_invitations

    assert sweep_unsent_invitations() == 1
    assert len(mail.outbox) == 1
    assert services.invitations_unsent_ids() == []


def test_customers_are_isolated_in_invitation_lookup(team):
    other = MembershipFactory(customer=CustomerFactory(), role="owner")
    membership = services.member_invite(
        actor=other.user, customer=other.customer, email="x@y.example.com", role="viewer"
    )
    assert membership.customer_id == other.customer_id


def test_team_actions_refuse_members_of_another_customer(team, owner_b):
    with pytest.raises(NotFound):
        services.member_change_role(actor=team["owner"].user, membership=owner_b, role="viewer")
    with pytest.raises(NotFound):
        services.member_remove(actor=team["owner"].user, membership=owner_b)
    with pytest.raises(NotFound):
        services.member_resend_invitation(actor=team["owner"].user, membership=owner_b)
    assert Membership.objects.get(pk=owner_b.pk).role == "owner"


def test_a_member_removed_meanwhile_is_a_clear_not_found(team):
    stale = Membership.objects.get(pk=team["dev"].pk)
    services.member_remove(actor=team["owner"].user, membership=team["dev"])
    with pytest.raises(NotFound):
        services.member_change_role(actor=team["owner"].user, membership=stale, role="viewer")


def test_only_owners_resend_an_owner_invitation(team):
    pending_owner = invite(team["owner"], email="cofounder@alpha.example.com", role="owner")
    with pytest.raises(Forbidden):
        services.member_resend_invitation(actor=team["admin"].user, membership=pending_owner)

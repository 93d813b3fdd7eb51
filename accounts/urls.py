"""The customer portal (namespace ``portal``)."""

from django.urls import path

from .views import auth, keys, team

app_name = "portal"

urlpatterns = [
    path("", auth.HomeView.as_view(), name="home"),
    path("login/", auth.LoginView.as_view(), name="login"),
    path("logout/", auth.LogoutView.as_view(), name="logout"),
    path("no-access/", auth.NoAccessView.as_view(), name="no_access"),
    path("password/", auth.PasswordChangeView.as_view(), name="password_change"),
    path("password/done/", auth.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("invitations/<str:token>/", auth.InvitationAcceptView.as_view(), name="invitation_accept"),
    # Team & contacts
    path("team/", team.TeamView.as_view(), name="team"),
    path("team/invite/", team.MemberInviteView.as_view(), name="member_invite"),
    path(
        "team/members/<int:membership_id>/role/", team.MemberRoleView.as_view(), name="member_role"
    ),
    path(
        "team/members/<int:membership_id>/remove/",
        team.MemberRemoveView.as_view(),
        name="member_remove",
    ),
    path(
        "team/members/<int:membership_id>/resend/",
        team.MemberResendView.as_view(),
        name="member_resend",
    ),
    path("team/contacts/new/", team.ContactCreateView.as_view(), name="contact_create"),
    path(
        "team/contacts/<int:contact_id>/edit/", team.ContactEditView.as_view(), name="contact_edit"
    ),
    path(
        "team/contacts/<int:contact_id>/delete/",
        team.ContactDeleteView.as_view(),
        name="contact_delete",
    ),
    # API keys
    path("keys/", keys.KeysView.as_view(), name="keys"),
    path("keys/<int:key_id>/revoke/", keys.KeyRevokeView.as_view(), name="key_revoke"),
]

"""Writes for accounts: customers, team membership, contacts, API keys, the audit log.

Every function here is keyword-only, runs in one transaction, and records an audit entry
for each change it makes. Permission rules that are business rules (the last owner stays)
live here; which portal role may reach a page is checked by the view via ``roles``.

The functions live in one module per subdomain; import them from here.
"""

from .api_keys import (
    KEY_ID_LENGTH,
    LAST_USED_RESOLUTION,
    SECRET_LENGTH,
    TOKEN_RE,
    ApiKeyRejected,
    api_key_authenticate,
    api_key_create,
    api_key_revoke,
)
from .audit import (
    Actor,
    actor_label,
    audit_entry,
    audit_record,
    exact_decimal,
    reject_unknown_fields,
    snapshot,
    validate_model,
)
from .contacts import CONTACT_FIELDS, contact_create, contact_delete, contact_update
from .customers import (
    CUSTOMER_AUDIT_FIELDS,
    CUSTOMER_UPDATABLE_FIELDS,
    customer_create,
    customer_update,
)
from .staff import STAFF_GROUP_PERMISSIONS, staff_groups_sync
from .team import (
    INVITATION_SALT,
    invitation_accept,
    invitation_from_token,
    invitation_send,
    invitation_token,
    invitations_unsent_ids,
    member_change_role,
    member_invite,
    member_remove,
    member_resend_invitation,
)

__all__ = [
    "CONTACT_FIELDS",
    "CUSTOMER_AUDIT_FIELDS",
    "CUSTOMER_UPDATABLE_FIELDS",
    "INVITATION_SALT",
    "KEY_ID_LENGTH",
    "LAST_USED_RESOLUTION",
    "SECRET_LENGTH",
    "STAFF_GROUP_PERMISSIONS",
    "TOKEN_RE",
    "Actor",
    "ApiKeyRejected",
    "actor_label",
    "api_key_authenticate",
    "api_key_create",
    "api_key_revoke",
    "audit_entry",
    "audit_record",
    "contact_create",
    "contact_delete",
    "contact_update",
    "customer_create",
    "customer_update",
    "exact_decimal",
    "invitation_accept",
    "invitation_from_token",
    "invitation_send",
    "invitation_token",
    "invitations_unsent_ids",
    "member_change_role",
    "member_invite",
    "member_remove",
    "member_resend_invitation",
    "reject_unknown_fields",
    "snapshot",
    "staff_groups_sync",
    "validate_model",
]

"""Who may do what, in one table.

Portal roles belong to a membership in one customer; every portal view asks ``role_allows``
rather than comparing role names itself.
"""

from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    DEVELOPER = "developer", "Developer"
    FINANCE = "finance", "Finance"
    VIEWER = "viewer", "Viewer"


class Ability(models.TextChoices):
    MANAGE_TEAM = "manage_team", "invite, remove and change the role of members"
    MANAGE_KEYS = "manage_keys", "create and revoke API keys"
    MANAGE_CONTACTS = "manage_contacts", "add, edit and remove contacts"
    VIEW_INVOICES = "view_invoices", "see invoices"
    DISPUTE_INVOICES = "dispute_invoices", "dispute invoice lines"
    MANAGE_GUARDRAILS = "manage_guardrails", "set hard caps and alert rules"
    MANAGE_WEBHOOKS = "manage_webhooks", "manage webhook endpoints and rotate their secrets"


_ABILITIES: dict[str, frozenset[str]] = {
    Role.OWNER: frozenset(Ability.values),
    Role.ADMIN: frozenset(Ability.values),
    Role.DEVELOPER: frozenset({Ability.MANAGE_CONTACTS, Ability.MANAGE_WEBHOOKS}),
    Role.FINANCE: frozenset(
        {
            Ability.MANAGE_CONTACTS,
            Ability.VIEW_INVOICES,
            Ability.DISPUTE_INVOICES,
            Ability.MANAGE_GUARDRAILS,
        }
    ),
    Role.VIEWER: frozenset(),
}


def role_allows(role: str, ability: str) -> bool:
    return ability in _ABILITIES.get(role, frozenset())


# Staff groups for the Django admin (vendor employees, not customer users).
class StaffGroup(models.TextChoices):
    FINANCE = "finance", "Finance"
    CSM = "csm", "Customer Success"
    SUPPORT = "support", "Support"

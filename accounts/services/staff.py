"""Vendor staff groups and the admin permissions each holds."""

from django.db import transaction

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
        # Invoicing: actions (finalize, release, void, credit, disputes) need "change" on
        # the model they act on; plans and versions are created through the services.
        ("invoicing", "plan", ("view", "add")),
        ("invoicing", "planversion", ("view", "add")),
        ("invoicing", "pricecomponent", ("view",)),
        ("invoicing", "subscription", ("view", "change")),
        ("invoicing", "subscriptionphase", ("view",)),
        ("invoicing", "invoice", ("view", "change")),
        ("invoicing", "invoiceline", ("view",)),
        ("invoicing", "invoiceusagecheck", ("view",)),
        ("invoicing", "creditnote", ("view", "change")),  # change: the Stripe resync action
        ("invoicing", "creditnoteline", ("view",)),
        ("invoicing", "dispute", ("view", "change")),
        ("alerts", "cap", ("view",)),
        ("alerts", "capwindow", ("view",)),
        # Alerts: customers' rules are only looked at; the operator's defaults per plan
        # are added, changed and removed through the rules services.
        ("alerts", "alertrule", ("view", "add", "change", "delete")),
        ("alerts", "plancapdefault", ("view", "add", "change", "delete")),
        ("alerts", "alert", ("view",)),
        ("alerts", "delivery", ("view", "change")),  # change: the replay action
        ("alerts", "deliveryattempt", ("view",)),
        ("alerts", "webhookendpoint", ("view",)),
        ("alerts", "expansionsignal", ("view",)),
    ],
    "csm": [
        ("accounts", "customer", ("view",)),
        ("accounts", "contact", ("view", "add", "change")),
        ("accounts", "membership", ("view",)),
        ("accounts", "auditlog", ("view",)),
        ("metering", "meter", ("view",)),
        ("metering", "usageevent", ("view",)),
        ("metering", "customerusagestate", ("view",)),
        # Expansion signals feed the CSM work queue; the alert behind each is evidence.
        ("alerts", "expansionsignal", ("view",)),
        ("alerts", "alert", ("view",)),
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
        # Invoicing: read-only.
        ("invoicing", "plan", ("view",)),
        ("invoicing", "planversion", ("view",)),
        ("invoicing", "pricecomponent", ("view",)),
        ("invoicing", "subscription", ("view",)),
        ("invoicing", "subscriptionphase", ("view",)),
        ("invoicing", "invoice", ("view",)),
        ("invoicing", "invoiceline", ("view",)),
        ("invoicing", "invoiceusagecheck", ("view",)),
        ("invoicing", "creditnote", ("view", "change")),  # change: the Stripe resync action
        ("invoicing", "creditnoteline", ("view",)),
        ("invoicing", "dispute", ("view",)),
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

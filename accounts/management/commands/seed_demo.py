"""Seed a realistic demo: customers with teams, contacts and API keys, plus vendor staff.

Deterministic (``random.Random(SEED)``) and idempotent: the whole plan is drawn the same way
on every run and only the rows that are missing are created, so a second run creates
nothing. Customers, contacts and keys go through the services (validated and audited);
users and memberships are bulk-created with one shared password hash to stay fast.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from accounts import services
from accounts.models import ApiKey, Contact, Customer, Membership, Persona, User
from accounts.roles import Role, StaffGroup
from accounts.scopes import ALL_SCOPES, CUSTOMER_KEY_SCOPES

SEED = 20260401
DEMO_PASSWORD = "meterbook-demo"  # noqa: S105 - printed on every demo start, demo data only

STAFF = [
    # email, first name, last name, superuser, group
    ("admin@meterbook.local", "Avery", "Admin", True, None),
    ("finance@meterbook.local", "Farah", "Nasser", False, StaffGroup.FINANCE),
    ("csm@meterbook.local", "Carlos", "Mendes", False, StaffGroup.CSM),
    ("support@meterbook.local", "Sam", "Okafor", False, StaffGroup.SUPPORT),
]

COMPANIES = [
    "Northwind Traders", "Fjord Analytics", "Kestrel Logistics", "Sakura Devices",
    "Lumen Health", "Tidewater Labs", "Copperleaf Retail", "Bluebird Payments",
    "Granite Data", "Helios Robotics", "Juniper Learning", "Marlow Insurance",
    "Nimbus Media", "Orchard Foods", "Pioneer Freight", "Quartz Security",
    "Redwood Legal", "Saffron Travel", "Tessellate AI", "Umbra Games",
    "Vantage Energy", "Willow Biotech", "Yarrow Fintech", "Zephyr Mobility",
    "Alder & Finch", "Brightwater Studios", "Cobalt Manufacturing", "Driftwood Hospitality",
    "Ember Telecom", "Foxglove Pharma", "Gullwing Aerospace", "Harbor Mutual",
    "Ironbark Construction", "Kite Commerce", "Lodestar Research", "Meridian Bank",
]  # fmt: skip

# currency, time zones, weight: the first customers take one region each, so every
# currency appears; the rest are drawn by weight.
REGIONS = [
    ("USD", ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"], 10),
    (
        "EUR",
        ["Europe/Berlin", "Europe/Paris", "Europe/Madrid", "Europe/Amsterdam", "Europe/Dublin"],
        7,
    ),
    ("GBP", ["Europe/London"], 4),
    ("JPY", ["Asia/Tokyo"], 3),
    ("CAD", ["America/Toronto", "America/Vancouver"], 2),
    ("AUD", ["Australia/Sydney", "Australia/Melbourne"], 2),
    ("CHF", ["Europe/Zurich"], 1),
    ("SEK", ["Europe/Stockholm"], 1),
    ("INR", ["Asia/Kolkata"], 1),
    ("BRL", ["America/Sao_Paulo"], 1),
    ("SGD", ["Asia/Singapore"], 1),
]

FIRST_NAMES = [
    "Olivia", "Liam", "Amara", "Noah", "Yuki", "Mateo", "Priya", "Lukas", "Chloe", "Kenji",
    "Sofia", "Ethan", "Ingrid", "Omar", "Zara", "Diego", "Hannah", "Ravi", "Elena", "Tomasz",
    "Grace", "Felix", "Aisha", "Jonas", "Mei", "Lucas", "Nadia", "Oscar", "Leila", "Hugo",
]  # fmt: skip
LAST_NAMES = [
    "Hart", "Okafor", "Lindqvist", "Tanaka", "Moreau", "Schmidt", "Patel", "Rossi", "Kowalski",
    "Nguyen", "Silva", "Fischer", "Haddad", "Walsh", "Costa", "Becker", "Sato", "Dubois",
    "Murphy", "Andersen", "Reyes", "Novak", "Ibrahim", "Clarke", "Jensen", "Kim",
]  # fmt: skip

TEAM_ROLES = [Role.ADMIN, Role.DEVELOPER, Role.FINANCE, Role.VIEWER]
# The persona a user of each role naturally is, when they are also a contact.
ROLE_PERSONA = {
    Role.OWNER: Persona.EXECUTIVE,
    Role.DEVELOPER: Persona.DEVELOPER,
    Role.FINANCE: Persona.FINANCE,
}


@dataclass
class PersonPlan:
    first: str
    last: str
    email: str
    role: str = ""
    invited_days_ago: int = 0

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"


@dataclass
class ContactPlan:
    name: str
    persona: str
    email: str = ""
    slack_webhook_url: str = ""
    teams_webhook_url: str = ""
    webhook_url: str = ""
    user_email: str | None = None


@dataclass
class CustomerPlan:
    name: str
    external_id: str
    domain: str
    currency: str
    timezone: str
    status: str
    users: list[PersonPlan] = field(default_factory=list)
    contacts: list[ContactPlan] = field(default_factory=list)
    test_key: bool = False


def _slug(name: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in name.lower()).split())


def demo_plan(seed: int = SEED) -> list[CustomerPlan]:
    """The full demo, drawn the same way every time from ``seed``."""
    rng = random.Random(seed)  # noqa: S311 - demo data, not secrets
    plans = []
    for index, company in enumerate(COMPANIES):
        region = (
            REGIONS[index]
            if index < len(REGIONS)
            else rng.choices(REGIONS, [r[2] for r in REGIONS])[0]
        )
        slug = _slug(company)
        domain = f"{slug}.example"
        plan = CustomerPlan(
            name=company,
            external_id=f"acct-{slug}",
            domain=domain,
            currency=region[0],
            timezone=rng.choice(region[1]),
            # The first customer is the demo login's; keep it active.
            status=Customer.Status.SUSPENDED
            if index and rng.random() < 0.08
            else Customer.Status.ACTIVE,
            test_key=rng.random() < 0.3,
        )
        team_size = 4 if index == 0 else rng.randint(1, 4)
        people = rng.sample(FIRST_NAMES, 8)
        surnames = rng.sample(LAST_NAMES, 8)
        roles = [Role.OWNER, *rng.sample(TEAM_ROLES, team_size - 1)]
        for role, first, last in zip(roles, people, surnames, strict=False):
            plan.users.append(
                PersonPlan(
                    first=first,
                    last=last,
                    email=f"{first}.{last}@{domain}".lower(),
                    role=role,
                    invited_days_ago=rng.randint(5, 400),
                )
            )
        personas = rng.sample(list(Persona.values), rng.randint(2, 4))
        outsiders = iter(zip(people[team_size:], surnames[team_size:], strict=False))
        for persona in personas:
            user = next((u for u in plan.users if ROLE_PERSONA.get(u.role) == persona), None)
            if user is not None and rng.random() < 0.7:
                name, email, user_email = user.name, user.email, user.email
            else:
                first, last = next(outsiders)
                name, email, user_email = (
                    f"{first} {last}",
                    f"{first}.{last}@{domain}".lower(),
                    None,
                )
            contact = ContactPlan(name=name, persona=persona, email=email, user_email=user_email)
            if persona == Persona.DEVELOPER:
                channel = rng.choice(["slack", "teams", "webhook", "email"])
                if channel == "slack":
                    contact.slack_webhook_url = (
                        f"https://hooks.slack.example/services/{slug}/{rng.randrange(10**8)}"
                    )
                elif channel == "teams":
                    contact.teams_webhook_url = (
                        f"https://teams.example/webhook/{slug}/{rng.randrange(10**8)}"
                    )
                elif channel == "webhook":
                    contact.webhook_url = f"https://api.{domain}/hooks/meterbook"
                    contact.email = "" if rng.random() < 0.5 else contact.email
            elif persona == Persona.FINANCE and rng.random() < 0.4:
                contact.slack_webhook_url = (
                    f"https://hooks.slack.example/services/{slug}-finance/{rng.randrange(10**8)}"
                )
            plan.contacts.append(contact)
        plans.append(plan)
    return plans


class Command(BaseCommand):
    help = "Seed the demo data (idempotent: a second run creates nothing) and print the logins."

    def handle(self, *args, **options):
        started = timezone.now()
        with transaction.atomic():
            counts, tokens = self._seed(demo_plan())
        elapsed = (timezone.now() - started).total_seconds()
        created = ", ".join(f"{n} {what}" for what, n in counts.items() if n) or "nothing new"
        self.stdout.write(f"seed_demo: {created} ({elapsed:.1f}s)")
        # The layers above accounts seed their own demo data (accounts never imports them).
        for path in settings.DEMO_SEEDERS:
            import_string(path)(self.stdout, random.Random(SEED))  # noqa: S311 - demo data
        self.stdout.write(self.logins())
        for label, token in tokens:
            self.stdout.write(f"  {label} (shown once, now): {token}")

    @staticmethod
    def logins() -> str:
        owner = demo_plan()[0]
        rows = [(label, email) for email, label in _staff_labels()]
        rows.append((f"Customer owner ({owner.name})", owner.users[0].email))
        width = max(len(label) for label, _ in rows)
        lines = [f"Demo logins — password for all: {DEMO_PASSWORD}"]
        lines += [f"  {label:<{width}}  {email}" for label, email in rows]
        lines.append("  Staff land in /admin/; customer users in the portal at /.")
        return "\n".join(lines)

    def _seed(self, plans: list[CustomerPlan]):
        counts = dict.fromkeys(("customers", "users", "memberships", "contacts", "api keys"), 0)
        tokens: list[tuple[str, str]] = []
        password_hash = make_password(DEMO_PASSWORD)  # hashed once: PBKDF2 per user is slow
        now = timezone.now()

        services.staff_groups_sync()
        counts["users"] += self._seed_staff(password_hash)

        existing = {
            c.external_id: c
            for c in Customer.objects.filter(external_id__in=[p.external_id for p in plans])
        }
        for plan in plans:
            if plan.external_id not in existing:
                existing[plan.external_id] = services.customer_create(
                    actor=None,
                    name=plan.name,
                    external_id=plan.external_id,
                    billing_email=f"billing@{plan.domain}",
                    currency=plan.currency,
                    timezone=plan.timezone,
                    status=plan.status,
                )
                counts["customers"] += 1
        customers = existing

        # Users and memberships in bulk.
        wanted = {u.email: (plan, u) for plan in plans for u in plan.users}
        users = {u.email: u for u in User.objects.filter(email__in=wanted)}
        new_users = [
            User(email=email, first_name=u.first, last_name=u.last, password=password_hash)
            for email, (_, u) in wanted.items()
            if email not in users
        ]
        for user in User.objects.bulk_create(new_users):
            users[user.email] = user
        counts["users"] += len(new_users)
        has_membership = set(
            Membership.objects.filter(user__in=users.values()).values_list("user_id", flat=True)
        )
        new_memberships = []
        for email, (plan, person) in wanted.items():
            user = users[email]
            if user.pk in has_membership:
                continue
            owner = users[plan.users[0].email]
            invited_at = now - timedelta(days=person.invited_days_ago)
            new_memberships.append(
                Membership(
                    user=user,
                    customer=customers[plan.external_id],
                    role=person.role,
                    invited_by=None if user == owner else owner,
                    invited_at=invited_at,
                    invitation_sent_at=invited_at,
                    accepted_at=invited_at + timedelta(hours=3),
                )
            )
        Membership.objects.bulk_create(new_memberships)
        counts["memberships"] += len(new_memberships)

        have_contacts = set(
            Contact.objects.filter(customer__in=customers.values()).values_list(
                "customer_id", "name"
            )
        )
        have_keys = set(
            ApiKey.objects.filter(customer__in=customers.values()).values_list(
                "customer_id", "name"
            )
        )
        for index, plan in enumerate(plans):
            customer = customers[plan.external_id]
            for contact in plan.contacts:
                if (customer.pk, contact.name) in have_contacts:
                    continue
                services.contact_create(
                    actor=None,
                    customer=customer,
                    name=contact.name,
                    persona=contact.persona,
                    email=contact.email,
                    slack_webhook_url=contact.slack_webhook_url,
                    teams_webhook_url=contact.teams_webhook_url,
                    webhook_url=contact.webhook_url,
                    user=users[contact.user_email] if contact.user_email else None,
                )
                counts["contacts"] += 1
            key_specs = [("Production integration", ApiKey.Environment.LIVE)]
            if plan.test_key:
                key_specs.append(("Staging integration", ApiKey.Environment.TEST))
            for name, environment in key_specs:
                if (customer.pk, name) in have_keys:
                    continue
                _, token = services.api_key_create(
                    actor=None,
                    name=name,
                    kind=ApiKey.Kind.CUSTOMER,
                    scopes=list(CUSTOMER_KEY_SCOPES),
                    customer=customer,
                    environment=environment,
                )
                counts["api keys"] += 1
                if index == 0 and environment == ApiKey.Environment.LIVE:
                    tokens.append((f"{plan.name} customer API key", token))

        operator_name = "Vendor backend (demo)"
        if not ApiKey.objects.filter(kind=ApiKey.Kind.OPERATOR, name=operator_name).exists():
            _, token = services.api_key_create(
                actor=None, name=operator_name, kind=ApiKey.Kind.OPERATOR, scopes=list(ALL_SCOPES)
            )
            counts["api keys"] += 1
            tokens.append(("Operator API key", token))
        return counts, tokens

    def _seed_staff(self, password_hash: str) -> int:
        created = 0
        groups = {g.name: g for g in Group.objects.filter(name__in=[s[4] for s in STAFF if s[4]])}
        for email, first, last, superuser, group in STAFF:
            user, was_created = User.objects.get_or_create(
                email=email,
                defaults={
                    "first_name": first,
                    "last_name": last,
                    "password": password_hash,
                    "is_staff": True,
                    "is_superuser": superuser,
                },
            )
            created += was_created
            if group and not user.groups.filter(pk=groups[group].pk).exists():
                user.groups.add(groups[group])
        return created


def _staff_labels():
    labels = {
        None: "Staff superuser",
        StaffGroup.FINANCE: "Finance staff",
        StaffGroup.CSM: "CSM staff",
    }
    labels[StaffGroup.SUPPORT] = "Support staff"
    return [(email, labels[group]) for email, _, _, _, group in STAFF]

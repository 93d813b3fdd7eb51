"""Helpers for the portal tests: members who are signed in, htmx requests, DB snapshots."""

from django.test import Client

from accounts.models import Customer, Membership
from accounts.roles import Role
from tests.accounts.factories import TEST_PASSWORD, MembershipFactory

HTMX = {"HX-Request": "true"}


def member(customer: Customer, role: str = Role.OWNER, **kwargs) -> Membership:
    """An accepted member of ``customer`` with ``role``."""
    return MembershipFactory(customer=customer, role=role, **kwargs)


def signed_in(client: Client, membership: Membership) -> Client:
    client.force_login(membership.user)
    return client


def login(client: Client, email: str, password: str = TEST_PASSWORD):
    return client.post("/login/", {"username": email, "password": password})


def row(model, pk) -> dict | None:
    """The row as stored, to compare before and after a request."""
    return model.objects.filter(pk=pk).values().first()

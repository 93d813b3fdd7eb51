"""Reads for caps."""

from django.db.models import QuerySet

from accounts.tenancy import scoped

from ..models import Cap


def cap_list(*, principal) -> QuerySet[Cap]:
    """The caps the principal may see (its own customer's; every cap for operator keys)."""
    return scoped(Cap.objects.select_related("customer", "meter"), principal).order_by("pk")

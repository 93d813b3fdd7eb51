"""The one choke point for tenant scoping.

Every customer-facing query — portal views and API views alike — goes through
``scoped()`` or ``get_scoped_or_404()``. A *principal* is whoever is asking: a portal
membership, or an API key. Customer-bound principals see only their own customer's rows;
operator keys (the vendor's product) see every customer. Another tenant's object is simply
not in the queryset, so it answers 404 — never 403, never data.
"""

from django.db.models import Model, QuerySet
from django.http import Http404

from .models import ApiKey, Membership


def principal_customer_id(principal: Membership | ApiKey) -> int | None:
    """The customer a principal is bound to, or ``None`` for a vendor-wide operator key."""
    if isinstance(principal, Membership):
        return principal.customer_id
    if isinstance(principal, ApiKey):
        return None if principal.is_operator else principal.customer_id
    raise TypeError(f"Not a principal: {principal!r}")


def scoped(queryset: QuerySet, principal: Membership | ApiKey) -> QuerySet:
    customer_id = principal_customer_id(principal)
    if customer_id is None:
        return queryset
    path = queryset.model.TENANT_PATH
    lookup = path if path == "pk" else f"{path}_id" if "__" not in path else f"{path}__id"
    return queryset.filter(**{lookup: customer_id})


def get_scoped_or_404(queryset: QuerySet, principal: Membership | ApiKey, **lookup) -> Model:
    try:
        return scoped(queryset, principal).get(**lookup)
    except (queryset.model.DoesNotExist, ValueError, TypeError) as exc:
        raise Http404(f"No {queryset.model._meta.verbose_name} matches the given query.") from exc

from rest_framework import exceptions, permissions

from accounts.models import ApiKey, Customer


class InsufficientScope(exceptions.PermissionDenied):
    default_code = "insufficient_scope"


class CustomerSuspended(exceptions.PermissionDenied):
    default_code = "customer_suspended"


class HasApiKey(permissions.BasePermission):
    """An active API key, holding the scope the view names for this request.

    Views declare ``required_scopes``: a mapping from HTTP method to scope, e.g.
    ``{"GET": "customers:read", "POST": "customers:write"}``. A method missing from it
    needs no scope beyond a valid key.
    """

    def has_permission(self, request, view):
        key = request.auth
        if not isinstance(key, ApiKey):
            raise exceptions.NotAuthenticated("Send an API key as `Authorization: Bearer <key>`.")
        if key.customer is not None and key.customer.status == Customer.Status.SUSPENDED:
            raise CustomerSuspended("This customer account is suspended.")
        method = "GET" if request.method in ("HEAD", "OPTIONS") else request.method
        scope = getattr(view, "required_scopes", {}).get(method)
        if scope and scope not in key.scopes:
            raise InsufficientScope(f"This API key lacks the {scope} scope.")
        return True


class OperatorKeyRequired(exceptions.PermissionDenied):
    default_code = "operator_key_required"


class OperatorOnlyMethods(permissions.BasePermission):
    """Methods in ``view.operator_methods`` act vendor-wide (send anyone's events, define
    meters, publish plans): a customer key is refused whatever scopes it holds."""

    def has_permission(self, request, view):
        if request.method in getattr(view, "operator_methods", ()) and not request.auth.is_operator:
            raise OperatorKeyRequired("Only an operator key may do this.")
        return True


class OperatorOnlyObjectMethods(permissions.BasePermission):
    """Methods in ``view.operator_object_methods`` act on a tenant's object as the vendor
    (credit, void, cancel): checked once the object is found, so another tenant's object
    is a 404 first, and a customer key's own object a 403 ``operator_key_required``."""

    def has_object_permission(self, request, view, obj):
        if (
            request.method in getattr(view, "operator_object_methods", ())
            and not request.auth.is_operator
        ):
            raise OperatorKeyRequired("Only an operator key may do this.")
        return True

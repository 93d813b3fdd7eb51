"""One error shape for the whole API:

``{"error": {"code": "machine_readable", "message": "human sentence", "field": "..."}}``
"""

import math

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

from accounts.errors import DomainError

_CODE_BY_EXCEPTION = [
    (exceptions.NotAuthenticated, "authentication_failed"),
    (exceptions.AuthenticationFailed, "authentication_failed"),
    (exceptions.ParseError, "parse_error"),
    (exceptions.NotFound, "not_found"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.UnsupportedMediaType, "unsupported_media_type"),
    (exceptions.NotAcceptable, "not_acceptable"),
    (exceptions.Throttled, "rate_limited"),
]


def error_body(code: str, message: str, field: str | None = None, **extra) -> dict:
    error = {"code": code, "message": message}
    if field:
        error["field"] = field
    error.update(extra)
    return {"error": error}


def _first_validation_error(detail, prefix=""):
    """(field path, ErrorDetail) of the first problem in a nested ValidationError detail."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            path = key if key == "non_field_errors" else (f"{prefix}.{key}" if prefix else str(key))
            return _first_validation_error(value, "" if key == "non_field_errors" else path)
    if isinstance(detail, list):
        for index, value in enumerate(detail):
            if isinstance(value, dict | list):
                return _first_validation_error(
                    value, f"{prefix}[{index}]" if prefix else f"[{index}]"
                )
            return prefix or None, value
    return prefix or None, detail


def _validation_message(field, detail) -> str:
    message = str(detail)
    if field and not message.lower().startswith(field.split(".")[-1].lower()):
        return f"{field}: {message}"
    return message


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response(error_body(exc.code, exc.message, exc.field), status=exc.status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None  # a real bug: let Django report it as a 500

    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        # Whole seconds, rounded up: a client that waits this long is let through.
        headers["Retry-After"] = str(max(1, math.ceil(exc.wait)))

    if isinstance(exc, exceptions.ValidationError):
        field, detail = _first_validation_error(exc.detail)
        code = getattr(detail, "code", None) or "invalid"
        body = error_body(code, _validation_message(field, detail), field)
        return Response(body, status=status.HTTP_400_BAD_REQUEST, headers=headers)

    code = next((c for cls, c in _CODE_BY_EXCEPTION if isinstance(exc, cls)), None)
    if code is None:
        detail_code = getattr(exc.detail, "code", None)
        code = (
            detail_code if detail_code and detail_code != "permission_denied" else exc.default_code
        )
        if code == "permission_denied":
            code = "forbidden"
    return Response(error_body(code, str(exc.detail)), status=exc.status_code, headers=headers)


def api_not_found(request, exception=None):
    """JSON 404 for unknown URLs under /api/ (Django's own handler404 serves HTML elsewhere)."""
    return JsonResponse(error_body("not_found", "No such endpoint."), status=404)

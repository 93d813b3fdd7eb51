"""Helpers for the API tests: a client holding a key, the one error shape, the API's routes."""

from collections.abc import Callable
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

API_PREFIX = "api/v1/"


def api(token: str | None = None) -> APIClient:
    """A client sending ``token`` as its bearer key (none if ``token`` is None)."""
    client = APIClient()
    if token is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def assert_error(response, status: int, code: str, field: str | None = None) -> dict:
    """The response is exactly ``{"error": {"code", "message", "field"?}}`` with these values.

    ``field=None`` asserts the error names no field.
    """
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) <= {"code", "message", "field"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"].strip(), error
    assert error.get("field") == field, error
    return error


@dataclass(frozen=True)
class Route:
    route: str
    name: str | None
    kwargs: frozenset[str]
    callback: Callable

    @property
    def view_class(self):
        return getattr(self.callback, "view_class", None)

    @property
    def methods(self) -> list[str]:
        return [m for m in ("get", "post", "put", "patch", "delete") if hasattr(self.view_class, m)]


def api_routes() -> list[Route]:
    """Every URL pattern registered under /api/v1/, found by walking the root resolver."""
    found = []

    def walk(patterns, prefix: str, namespaces: list[str], kwargs: frozenset[str]):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            names = kwargs | frozenset(pattern.pattern.regex.groupindex)
            if isinstance(pattern, URLResolver):
                inner = [*namespaces, pattern.namespace] if pattern.namespace else namespaces
                walk(pattern.url_patterns, route, inner, names)
            elif isinstance(pattern, URLPattern):
                name = ":".join([*namespaces, pattern.name]) if pattern.name else None
                found.append(Route(route, name, names, pattern.callback))

    walk(get_resolver().url_patterns, "", [], frozenset())
    return [r for r in found if r.route.startswith(API_PREFIX)]

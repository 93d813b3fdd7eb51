"""/api/v1/me, the OpenAPI schema and the offline docs page."""

import json
import re

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command
from drf_spectacular.validation import validate_schema

from tests.accounts.api.support import api
from tests.accounts.factories import make_api_key

pytestmark = pytest.mark.django_db


# --- /me -------------------------------------------------------------------------------------


def test_me_describes_a_customer_key(customer_a):
    key, token = make_api_key(
        customer=customer_a, scopes=["contacts:read", "usage:read"], name="Grafana"
    )

    response = api(token).get("/api/v1/me")

    assert response.status_code == 200
    body = response.json()
    key.refresh_from_db()
    assert body == {
        "name": "Grafana",
        "prefix": key.prefix,
        "kind": "customer",
        "environment": "live",
        "scopes": ["contacts:read", "usage:read"],
        "customer": {"external_id": "alpha", "name": "Alpha Analytics"},
        "created_at": body["created_at"],
        "last_used_at": body["last_used_at"],
    }
    assert body["prefix"].startswith("mb_live_cu_")
    assert token not in response.content.decode()
    assert body["created_at"] and body["last_used_at"]


def test_me_describes_an_operator_key(db):
    _, token = make_api_key(environment="test", name="Billing backend")
    body = api(token).get("/api/v1/me").json()
    assert (body["kind"], body["environment"], body["customer"]) == ("operator", "test", None)
    assert body["prefix"].startswith("mb_test_op_")
    assert "customers:write" in body["scopes"]


# --- Schema ----------------------------------------------------------------------------------


def _schema(client) -> dict:
    response = client.get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def test_schema_is_valid_openapi_3_with_every_endpoint(db):
    schema = _schema(api())

    validate_schema(schema)
    assert schema["openapi"].startswith("3.")
    assert {
        "/api/v1/customers",
        "/api/v1/customers/{external_id}",
        "/api/v1/contacts",
        "/api/v1/contacts/{contact_id}",
        "/api/v1/me",
    } <= set(schema["paths"])
    assert set(schema["paths"]["/api/v1/contacts/{contact_id}"]) >= {"get", "patch", "delete"}


def test_schema_declares_the_bearer_key_on_every_operation(db):
    schema = _schema(api())

    scheme = schema["components"]["securitySchemes"]["ApiKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    operations = [op for item in schema["paths"].values() for op in item.values()]
    assert operations
    assert all(op["security"] == [{"ApiKey": []}] for op in operations)


def test_schema_documents_the_error_shape(db):
    schema = _schema(api())
    error = schema["components"]["schemas"]["ErrorDetail"]
    assert set(error["properties"]) == {"code", "message", "field"}
    create = schema["paths"]["/api/v1/customers"]["post"]["responses"]
    assert {"201", "400", "401", "403", "409"} <= set(create)


def test_schema_and_docs_need_no_key_and_ignore_a_bad_one(db):
    client = api("not-a-key")
    assert _schema(client)["paths"]
    assert client.get("/api/v1/docs/").status_code == 200


def test_schema_generates_without_warnings(tmp_path):
    # --fail-on-warn makes every drf-spectacular warning (untyped field, name clash) an error.
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert "/api/v1/contacts/{contact_id}" in out.read_text()


# --- Docs page -------------------------------------------------------------------------------


def test_docs_page_uses_only_local_static_assets(db):
    response = api().get("/api/v1/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    # No asset, font or validator badge from another host: the machine has no internet.
    assert not re.search(r"https?://", html)
    assert '"validatorUrl": null' in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    for asset in assets:
        assert asset.startswith("/static/"), asset
        path = finders.find(asset.removeprefix("/static/"))
        assert path, f"{asset} is not a static file of this project"
        if asset.endswith(".css"):
            with open(path, encoding="utf-8") as css:
                urls = re.findall(r"url\(\s*['\"]?([^'\")]+)", css.read())
            assert all(not re.match(r"(https?:)?//", url) for url in urls), asset


def test_docs_page_points_at_the_schema(db):
    html = api().get("/api/v1/docs/").content.decode()
    assert 'url: "/api/v1/schema/"' in html

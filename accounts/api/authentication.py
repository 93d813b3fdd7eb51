from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from accounts.services import ApiKeyRejected, api_key_authenticate


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer mb_…``; ``request.auth`` is the ApiKey, ``request.user`` None."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != self.keyword.lower() or not token.strip():
            raise exceptions.AuthenticationFailed(
                "Send the API key as `Authorization: Bearer <key>`."
            )
        try:
            key = api_key_authenticate(token.strip())
        except ApiKeyRejected as exc:
            raise exceptions.AuthenticationFailed(exc.message) from exc
        return (None, key)

    def authenticate_header(self, request):
        return f'{self.keyword} realm="api"'


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A Meterbook API key (mb_live_… / mb_test_…).",
        }

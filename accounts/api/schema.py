"""OpenAPI responses shared by every endpoint: the one error shape, per status."""

from drf_spectacular.utils import OpenApiResponse

from .serializers import ErrorSerializer

ERROR_DESCRIPTIONS = {
    400: "Invalid input (`code` says what, `field` names where): malformed JSON, an unknown "
    "field or a bad value.",
    401: "No API key, or the key is malformed, unknown or revoked.",
    403: "The key lacks the scope (`insufficient_scope`) or is not an operator key "
    "(`operator_key_required`).",
    404: "No such object among those this key may see.",
    409: "Conflicts with an existing object.",
    413: "Over the body limit (`payload_too_large`) or over 10,000 events (`batch_too_large`).",
    415: "The body is not JSON.",
    429: "Too many requests for this key (`rate_limited`); retry after `Retry-After` seconds.",
}


def responses(ok: dict, *error_statuses: int) -> dict:
    """The success responses plus the error shape for 401, 403, 429 and the given statuses."""
    errors = {
        status: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[status])
        for status in sorted({401, 403, 429, *error_statuses})
    }
    return {**ok, **errors}

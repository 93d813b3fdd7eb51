"""Fast JSON in and out for the event endpoints (the ingest hot path).

``EventBatchParser`` refuses an oversized body from its Content-Length before reading a
byte, reads at most the limit (a body without an honest length cannot slip past), and
decodes with orjson. Validating the events themselves is ``metering.ingest``'s job: no DRF
serializer runs per event.
"""

import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer

from accounts.errors import TooLarge


def _mebibytes(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB" if size >= 1024 * 1024 else f"{size:,} bytes"


def payload_too_large(limit: int) -> TooLarge:
    return TooLarge(
        f"The body exceeds the limit of {_mebibytes(limit)} ({limit:,} bytes); "
        "send the events in smaller batches.",
        code="payload_too_large",
    )


def declared_length(meta) -> int | None:
    try:
        return int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None


class EventBatchParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.METERING_EVENTS_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        declared = declared_length(request.META) if request is not None else None
        if declared is not None and declared > limit:
            raise payload_too_large(limit)
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise payload_too_large(limit)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"The body is not valid JSON: {exc}") from exc


class OrjsonRenderer(BaseRenderer):
    """JSON through orjson: a 10,000-event answer renders in milliseconds."""

    media_type = "application/json"
    format = "json"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if data is None:
            return b""
        return orjson.dumps(data)

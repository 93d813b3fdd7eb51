"""Keyset pagination for raw events, newest first on (timestamp, id).

Events live in a table partitioned by event time, so the order (and the cursor) is the
event time with the id breaking ties; id alone is not time order (a backfill gets new ids
for old times). DRF's CursorPagination keys on one field and skips ties by an offset
capped at 1,000, which breaks on a batch of events sharing a timestamp. Here the cursor is
the exact (timestamp, id) of the row to continue from, so a page costs one index range
read in the partitions it touches, however deep.
"""

import base64
from datetime import datetime

import orjson
from django.db.models import Q, QuerySet
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import BasePagination
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param


class EventCursorPagination(BasePagination):
    cursor_query_param = "cursor"
    page_size_query_param = "limit"
    page_size = 50
    max_page_size = 500

    def _invalid(self, message: str) -> ValidationError:
        return ValidationError({self.cursor_query_param: [message]}, code="invalid_cursor")

    def _page_size(self, request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if size < 1:
            raise ValidationError(
                {self.page_size_query_param: ["limit must be a positive whole number."]},
                code="invalid",
            )
        return min(size, self.max_page_size)

    def _decode(self, raw: str) -> tuple[datetime, int, bool]:
        try:
            padded = raw + "=" * (-len(raw) % 4)
            timestamp, pk, backwards = orjson.loads(base64.urlsafe_b64decode(padded))
            return datetime.fromisoformat(timestamp), int(pk), bool(backwards)
        except (ValueError, TypeError, orjson.JSONDecodeError):
            raise self._invalid("This cursor is not valid; follow a page's `next` link.") from None

    @staticmethod
    def _encode(timestamp: datetime, pk: int, backwards: bool) -> str:
        payload = orjson.dumps([timestamp.isoformat(), pk, backwards])
        return base64.urlsafe_b64encode(payload).decode().rstrip("=")

    def paginate_queryset(self, queryset: QuerySet, request, view=None) -> list:
        """One page of ``queryset`` (any order it had is replaced by newest first)."""
        self.request = request
        size = self._page_size(request)
        raw = request.query_params.get(self.cursor_query_param)
        position = self._decode(raw) if raw else None
        backwards = bool(position and position[2])
        if position:
            timestamp, pk, _ = position
            # The plain range on timestamp lets PostgreSQL skip whole partitions.
            if backwards:
                queryset = queryset.filter(timestamp__gte=timestamp).filter(
                    Q(timestamp__gt=timestamp) | Q(id__gt=pk)
                )
            else:
                queryset = queryset.filter(timestamp__lte=timestamp).filter(
                    Q(timestamp__lt=timestamp) | Q(id__lt=pk)
                )
        order = ("timestamp", "id") if backwards else ("-timestamp", "-id")
        rows = list(queryset.order_by(*order)[: size + 1])
        more = len(rows) > size
        rows = rows[:size]
        if backwards:
            rows.reverse()
        # Going forwards, a next page exists when we over-read; a previous one whenever we
        # came from a cursor. Going backwards, the reverse.
        self.has_next = more if not backwards else True
        self.has_previous = (position is not None) if not backwards else more
        self.rows = rows
        return rows

    def _link(self, row, backwards: bool) -> str:
        url = self.request.build_absolute_uri()
        return replace_query_param(
            url, self.cursor_query_param, self._encode(row.timestamp, row.pk, backwards)
        )

    def get_next_link(self) -> str | None:
        if not self.rows or not self.has_next:
            return None
        return self._link(self.rows[-1], backwards=False)

    def get_previous_link(self) -> str | None:
        if not self.has_previous:
            return None
        if not self.rows:
            # Walked backwards past the start: the first page has no cursor.
            return remove_query_param(self.request.build_absolute_uri(), self.cursor_query_param)
        return self._link(self.rows[0], backwards=True)

    def get_paginated_response(self, data) -> Response:
        return Response(
            {"next": self.get_next_link(), "previous": self.get_previous_link(), "results": data}
        )

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return {
            "type": "object",
            "required": ["next", "previous", "results"],
            "properties": {
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "previous": {"type": "string", "nullable": True, "format": "uri"},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view) -> list[dict]:
        return [
            {
                "name": self.cursor_query_param,
                "in": "query",
                "required": False,
                "description": "From a page's `next` or `previous` link.",
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "in": "query",
                "required": False,
                "description": (
                    f"Page size (default {self.page_size}, at most {self.max_page_size})."
                ),
                "schema": {"type": "integer"},
            },
        ]

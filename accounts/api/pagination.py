from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination


class CreatedCursorPagination(CursorPagination):
    """Newest first; the cursor rides on the unique, ever-growing primary key."""

    ordering = "-id"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500

    def decode_cursor(self, request):
        try:
            return super().decode_cursor(request)
        except NotFound as exc:
            # DRF answers a garbled cursor with 404, but the list exists: the input is wrong.
            raise ValidationError(
                {
                    self.cursor_query_param: [
                        "This cursor is not valid; follow a page's `next` link."
                    ]
                },
                code="invalid_cursor",
            ) from exc

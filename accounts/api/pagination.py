from rest_framework.pagination import CursorPagination


class CreatedCursorPagination(CursorPagination):
    """Newest first; the cursor rides on the unique, ever-growing primary key."""

    ordering = "-id"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500

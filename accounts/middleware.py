"""Request guards that hold for every route."""

from django.http import Http404, JsonResponse

from accounts.api.errors import error_body


class NulInPathMiddleware:
    """A path with a NUL character names nothing: PostgreSQL text never holds one, and a
    view looking the name up would fail with a 500. Answered 404 here, once for every
    route (a JSON error under /api/, the site's 404 page elsewhere)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "\x00" in request.path:
            message = "No object has a name with a NUL character."
            if request.path.startswith("/api/"):
                return JsonResponse(error_body("not_found", message), status=404)
            raise Http404(message)
        return self.get_response(request)

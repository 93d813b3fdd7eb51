"""``POST /webhooks/stripe/``: Stripe's events in, verified by the SDK before anything else.

No session, no CSRF token (Stripe's signature is the authentication), JSON out. A bad or
missing signature answers 400 and stores nothing; every verified event answers 200, also a
duplicate or one we do not act on, so Stripe stops retrying it. An error while applying an
event is a 500: nothing was stored, and Stripe delivers it again later.
"""

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.api.errors import error_body
from accounts.errors import DomainError

from .services.stripe_webhooks import stripe_event_receive, stripe_event_verify


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    try:
        event = stripe_event_verify(
            payload=request.body, signature=request.headers.get("Stripe-Signature")
        )
    except DomainError as error:
        return JsonResponse(error_body(error.code, error.message), status=error.status)
    result = stripe_event_receive(event=event)
    return JsonResponse(
        {
            "received": True,
            "event": result.event_id,
            "duplicate": result.duplicate,
            "outcome": result.outcome,
        }
    )

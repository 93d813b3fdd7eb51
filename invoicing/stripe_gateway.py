"""The one door to Stripe: a client built from settings and a call that retries safely.

    client = stripe_gateway.client()
    invoice = stripe_gateway.call(
        client.v1.invoices.create,
        params={"customer": customer_id, "collection_method": "send_invoice", ...},
        idempotency_key=stripe_gateway.idempotency_key("invoice", invoice.pk, "create"),
    )
    stripe_gateway.call(
        functools.partial(client.v1.invoices.finalize_invoice, stripe_invoice_id),
        params={},
        idempotency_key=stripe_gateway.idempotency_key("invoice", invoice.pk, "finalize"),
    )

Every attempt of one operation carries the same ``Idempotency-Key``, so Stripe acts at most
once however often we retry, including after a timeout that hid a success. Retries happen
at two levels:

- the SDK (``MAX_NETWORK_RETRIES``) retries connection errors, timeouts, 409 and 5xx at once;
- :func:`call` retries what still fails, with backoff, and owns 429: the SDK retries a 429
  only when Stripe sends ``Stripe-Should-Retry: true`` and never reads ``Retry-After``.

Any other 4xx is Stripe refusing the request: raised at once as :class:`StripeRejected`.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

import stripe
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from accounts.errors import DomainError

logger = logging.getLogger(__name__)

T = TypeVar("T")

CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 20.0
# The SDK's own immediate retries (0.5 s, 1 s, ... apart), each with the same key.
MAX_NETWORK_RETRIES = 2
# Attempts of call() (each may include the SDK's retries), and its pauses between them.
CALL_ATTEMPTS = 5
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 30.0
RETRY_AFTER_CAP_SECONDS = 60.0
# Stripe accepts idempotency keys of up to 255 characters.
IDEMPOTENCY_KEY_MAX_LENGTH = 255


class StripeGatewayError(DomainError):
    """Stripe did not do what we asked."""

    status = 502
    code = "stripe_error"


class StripeRejected(StripeGatewayError):
    """Stripe refused the request (a 4xx other than 409/429); retrying will not help.

    ``code``, ``message`` and ``field`` are Stripe's (``code`` falls back to the error type);
    ``http_status`` is Stripe's status, ``error`` the SDK's exception.
    """

    code = "stripe_rejected"

    def __init__(self, error: stripe.StripeError):
        body = error.json_body.get("error", {}) if isinstance(error.json_body, dict) else {}
        body = body if isinstance(body, dict) else {}
        super().__init__(
            body.get("message") or error.user_message or "Stripe refused the request.",
            code=error.code or body.get("code") or body.get("type"),
            field=body.get("param"),
        )
        self.http_status = error.http_status
        self.error = error


class StripeUnavailable(StripeGatewayError):
    """Stripe could not be reached or kept failing (timeouts, 5xx, 429) for every attempt.

    The operation may or may not have happened: retry it later with the same key.
    """

    status = 503
    code = "stripe_unavailable"

    def __init__(self, message: str, *, last_error: stripe.StripeError, attempts: int):
        super().__init__(message)
        self.last_error = last_error
        self.attempts = attempts


def stripe_enabled() -> bool:
    return bool(settings.STRIPE_API_KEY)


def client() -> stripe.StripeClient:
    """A StripeClient from settings (``STRIPE_API_BASE``, when set, replaces Stripe's API)."""
    if not stripe_enabled():
        raise ImproperlyConfigured("STRIPE_API_KEY is not set: Stripe sync is off.")
    base_addresses = {"api": settings.STRIPE_API_BASE} if settings.STRIPE_API_BASE else None
    return stripe.StripeClient(
        settings.STRIPE_API_KEY,
        base_addresses=base_addresses,
        max_network_retries=MAX_NETWORK_RETRIES,
        http_client=stripe.RequestsClient(timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS)),
    )


def idempotency_key(*parts: object) -> str:
    """A stable key from our own ids: ``idempotency_key("invoice", 42, "create")`` gives
    ``meterbook:invoice:42:create``.

    Stripe refuses a key reused with other parameters, and forgets keys after 24 hours:
    the parts must name everything that decides the parameters (add a revision if they
    can change).
    """
    texts = [str(part) for part in parts]
    if not texts or any(not text or ":" in text for text in texts):
        raise ValueError(f"idempotency key parts must be non-empty and without ':': {parts!r}")
    key = "meterbook:" + ":".join(texts)
    if len(key) > IDEMPOTENCY_KEY_MAX_LENGTH:
        raise ValueError(f"idempotency key longer than {IDEMPOTENCY_KEY_MAX_LENGTH}: {key!r}")
    return key


def call(
    operation: Callable[..., T],
    *,
    params: dict,
    idempotency_key: str | None,
    sleep: Callable[[float], None] = time.sleep,
    attempts: int = CALL_ATTEMPTS,
    rand: Callable[[], float] = random.random,
) -> T:
    """Run a StripeClient service method, retrying transient failures with the same key.

    ``operation`` is called as ``operation(params=..., options=...)``; bind a path argument
    first (``functools.partial(client.v1.invoices.void_invoice, invoice_id)``). Reads may
    pass ``idempotency_key=None``. Raises :class:`StripeRejected` at once for a refusal and
    :class:`StripeUnavailable` once ``attempts`` are used up.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    options = {"idempotency_key": idempotency_key} if idempotency_key else {}
    for attempt in range(1, attempts + 1):
        try:
            return operation(params=params, options=options)
        except stripe.StripeError as error:
            if not _transient(error):
                raise StripeRejected(error) from error
            last_error = error
        if attempt == attempts:
            break
        delay = _retry_after_seconds(last_error)
        if delay is None:
            delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
            delay *= 0.5 + rand() / 2  # jitter: spread retries of many jobs apart
        logger.warning(
            "Stripe attempt %d/%d failed (%s: %s), key %s; retrying in %.2f s",
            attempt,
            attempts,
            type(last_error).__name__,
            " ".join(str(last_error.user_message).split()),
            idempotency_key,
            delay,
        )
        sleep(delay)
    raise StripeUnavailable(
        f"Stripe did not answer successfully after {attempts} attempts "
        f"(last: {type(last_error).__name__}: {last_error.user_message}).",
        last_error=last_error,
        attempts=attempts,
    ) from last_error


def _transient(error: stripe.StripeError) -> bool:
    if isinstance(error, stripe.APIConnectionError):
        return True  # connection refused or reset, timeouts
    status = error.http_status
    return status is not None and (status in (409, 429) or status >= 500)


def _retry_after_seconds(error: stripe.StripeError) -> float | None:
    """``Retry-After`` (seconds or an HTTP date), capped; None when absent or unreadable."""
    raw = next((v for k, v in (error.headers or {}).items() if k.lower() == "retry-after"), None)
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_SECONDS)

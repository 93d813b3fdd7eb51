"""Per-API-key rate limits, counted in Redis (the default cache).

A fixed window per key and scope: the first request of a window creates its counter with
an expiry, the next ones increment it atomically, so every web worker shares one count.
Over the limit, DRF raises ``Throttled`` and the API's error handler answers 429
``rate_limited`` with ``Retry-After``.

Rates come from ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`` (read per request, so tests
and deploys can change them): the view's ``throttle_scopes`` maps an HTTP method to a rate
name; methods it does not name use ``"api"``.
"""

import logging
import time

from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from redis.exceptions import RedisError
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from accounts.models import ApiKey

logger = logging.getLogger(__name__)

DEFAULT_SCOPE = "api"
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """``"100/s"`` -> (100 requests, 1-second window); also minutes, hours, days."""
    try:
        count, period = rate.split("/")
        return int(count), _SECONDS[period.strip()[0]]
    except (ValueError, KeyError, IndexError) as exc:
        raise ImproperlyConfigured(f"{rate!r} is not a rate like 100/s.") from exc


class ApiKeyRateThrottle(BaseThrottle):
    def __init__(self):
        self.retry_after: float | None = None

    def allow_request(self, request, view) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return True  # unauthenticated requests are refused before they cost anything
        method = "GET" if request.method in ("HEAD", "OPTIONS") else request.method
        scope = getattr(view, "throttle_scopes", {}).get(method, DEFAULT_SCOPE)
        try:
            rate = api_settings.DEFAULT_THROTTLE_RATES[scope]
        except KeyError as exc:
            raise ImproperlyConfigured(f"No rate for {scope!r} in DEFAULT_THROTTLE_RATES.") from exc
        limit, window = parse_rate(rate)

        now = time.time()
        window_index = int(now // window)
        counter = f"ratelimit:{scope}:{key.key_id}:{window}:{window_index}"
        try:
            count = self._hit(counter, window)
        except RedisError:
            # The limiter guards capacity; it is not worth refusing usage events (money)
            # while its store is away. Let the request through and say so loudly.
            logger.warning("rate limiter unavailable; %s let through", counter, exc_info=True)
            return True
        if count <= limit:
            return True
        self.retry_after = (window_index + 1) * window - now
        return False

    @staticmethod
    def _hit(counter: str, window: int) -> int:
        # add() is SET NX with the expiry: only the window's first request creates it.
        if cache.add(counter, 1, timeout=window + 1):
            return 1
        try:
            return cache.incr(counter)
        except ValueError:  # expired between the two calls: this is a fresh window
            cache.add(counter, 1, timeout=window + 1)
            return 1

    def wait(self) -> float | None:
        """Seconds until the window ends (the error handler rounds it up for Retry-After)."""
        return self.retry_after

"""Per-key rate limits, counted in the real Redis behind the default cache."""

import logging
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.test import override_settings

from accounts.api.throttling import parse_rate
from billing_project.settings.base import redis_cache_url
from tests.accounts.api.support import api, assert_error
from tests.accounts.factories import make_api_key

from .support import EVENTS, METERS, send

pytestmark = pytest.mark.django_db


def _rates(**rates):
    # An hour-long window: the test's few requests cannot straddle two windows by chance.
    return override_settings(
        REST_FRAMEWORK={
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {"events": "100/s", "api": "50/s", **rates},
        }
    )


def test_the_counters_live_in_redis():
    assert isinstance(caches["default"], RedisCache)


def test_key_over_its_ingest_rate_gets_429_with_retry_after():
    client = api(make_api_key()[1])
    with _rates(events="2/h"):
        assert send(client, []).status_code == 200
        assert send(client, []).status_code == 200
        refused = send(client, [])

    error = assert_error(refused, 429, "rate_limited")
    assert error["message"]
    assert 1 <= int(refused["Retry-After"]) <= 3600


def test_limits_are_per_key_and_per_rate():
    first, second = api(make_api_key()[1]), api(make_api_key()[1])
    with _rates(events="1/h", api="1/h"):
        assert send(first, []).status_code == 200
        assert send(first, []).status_code == 429
        # Another key has its own count; the same key's reads count against "api".
        assert send(second, []).status_code == 200
        assert first.get(METERS).status_code == 200
        assert_error(first.get(METERS), 429, "rate_limited")


def test_per_second_rate_asks_to_retry_within_seconds():
    client = api(make_api_key()[1])
    with _rates(api="1/s"):
        responses = [client.get(EVENTS) for _ in range(3)]
    refused = [r for r in responses if r.status_code == 429]
    # Three requests in well under a second: at most one per window gets through.
    assert len(refused) >= 1
    # The window ends within a second; DRF rounds up and the error handler adds one.
    assert all(1 <= int(r["Retry-After"]) <= 2 for r in refused)


def test_unauthenticated_requests_are_refused_before_counting():
    with _rates(events="1/h"):
        for _ in range(3):
            assert_error(send(api(), []), 401, "authentication_failed")


def test_requests_go_through_while_the_limiter_store_is_down(caplog):
    client = api(make_api_key()[1])
    unreachable = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    with override_settings(CACHES=unreachable), caplog.at_level(logging.WARNING):
        assert send(client, []).status_code == 200
    assert "rate limiter unavailable" in caplog.text


@pytest.mark.parametrize(
    ("rate", "parsed"), [("100/s", (100, 1)), ("5/min", (5, 60)), ("2/h", (2, 3600))]
)
def test_rates_read_as_requests_per_window(rate, parsed):
    assert parse_rate(rate) == parsed


@pytest.mark.parametrize(
    ("broker", "cache"),
    [
        ("redis://127.0.0.1:6379/6", "redis://127.0.0.1:6379/6"),
        ("redis+socket:///tmp/mb/redis.sock", "unix:///tmp/mb/redis.sock"),
        ("redis+socket:///tmp/mb/redis.sock?virtual_host=3", "unix:///tmp/mb/redis.sock?db=3"),
    ],
)
def test_cache_reaches_the_brokers_redis(broker, cache):
    assert redis_cache_url(broker) == cache


def test_a_malformed_rate_fails_at_start_naming_the_variable():
    code = "import django; django.setup()"
    env = {
        "DJANGO_SETTINGS_MODULE": "billing_project.settings.test",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/unused",
        "API_RATE_LIMIT": "lots",
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "API_RATE_LIMIT" in result.stderr.strip().splitlines()[-1]

"""Test profile: fast hashing, in-memory mail, same PostgreSQL and Redis as everything else."""

from .base import *  # noqa: F403

DEBUG = False
SECRET_KEY = "test-only-secret-key"  # noqa: S105
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
LOGGING["root"]["level"] = "WARNING"  # noqa: F405

# Tasks run inline in tests unless a test starts a real worker (tests/test_celery_worker.py
# does, against the real broker); the code path is the same `.delay()`.
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True

# seed_demo's full usage seed takes the better part of a minute; tests that want demo usage
# call metering.demo.seed_usage with a few customers and months, or set this themselves.
DEMO_SEEDERS = []

# Rate limits stay out of the way of tests that make many requests in a second; the
# rate-limit tests set their own tiny limits.
REST_FRAMEWORK = {
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_THROTTLE_RATES": {"events": "100000/s", "api": "100000/s"},
}

# --- Alerts: outbound deliveries ---------------------------------------------------------
# Tests' webhook receivers listen on loopback; the SSRF tests set this back to [].
ALERTS_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]

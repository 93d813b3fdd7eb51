"""Settings shared by every environment.

Everything that differs between machines comes from the environment through
django-environ; a malformed value raises ``ImproperlyConfigured`` naming the variable,
so a bad deploy fails at start and not on the first request.
"""

import re
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()


def env_value(name, cast, **kwargs):
    """Read ``name`` with django-environ, naming the variable when its value is malformed."""
    try:
        return cast(name, **kwargs)
    except ImproperlyConfigured:
        raise
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"Environment variable {name} is invalid: {exc}") from exc


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_bool(name: str, *, default: bool) -> bool:
    """A strict boolean: django-environ reads any unknown word ("ture", "maybe") as False,
    which would silently turn a security switch off."""
    raw = env.str(name, default="").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"Environment variable {name} is invalid: {raw!r} is not a boolean (use true or false)."
    )


def database_from_env():
    """The database from ``DATABASE_URL``.

    The launcher (``billing_project.embedded``) sets it to the embedded PostgreSQL when the
    developer has not; settings never start servers themselves.
    """
    url = env_value("DATABASE_URL", env.str, default="")
    if not url:
        raise ImproperlyConfigured(
            "DATABASE_URL is not set. Start through `make demo` / `make test` (they start an "
            "embedded PostgreSQL when it is unset) or point it at a PostgreSQL server."
        )
    try:
        config = environ.Env.db_url_config(url)
    except (ValueError, KeyError) as exc:
        raise ImproperlyConfigured(f"Environment variable DATABASE_URL is invalid: {exc}") from exc
    if config.get("ENGINE") != "django.db.backends.postgresql":
        raise ImproperlyConfigured(
            "Environment variable DATABASE_URL must point at PostgreSQL (postgres://...)."
        )
    config["CONN_MAX_AGE"] = env_value("DB_CONN_MAX_AGE", env.int, default=60)
    config["CONN_HEALTH_CHECKS"] = True
    return config


SECRET_KEY = env_value("SECRET_KEY", env.str, default="")
DEBUG = False
ALLOWED_HOSTS = env_value("ALLOWED_HOSTS", env.list, default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "django_celery_beat",
    # Ours, in dependency order: each may import only the ones above it.
    "accounts",
    "metering",
    "invoicing",
    "alerts",
    "revenue",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "accounts.middleware.NulInPathMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "billing_project.urls"
WSGI_APPLICATION = "billing_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.portal",
                "alerts.context_processors.alerts",
            ],
        },
    },
]

DATABASES = {"default": database_from_env()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "portal:login"
LOGIN_REDIRECT_URL = "portal:home"
LOGOUT_REDIRECT_URL = "portal:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    # plotly/plotly.min.js from the plotly wheel (charts without a CDN), that file only.
    "metering.staticfinders.PlotlyJsFinder",
]

# Called by ``manage.py seed_demo`` after it seeds accounts, each as ``seeder(stdout, rng)``:
# the layers above accounts add their demo data without accounts importing them.
DEMO_SEEDERS = [
    "metering.demo.seed_usage",
    "invoicing.demo.seed_billing",
    "alerts.demo.seed_alerts",
]

# --- Email ---------------------------------------------------------------------------
EMAIL_BACKEND = env_value(
    "EMAIL_BACKEND", env.str, default="django.core.mail.backends.smtp.EmailBackend"
)
EMAIL_HOST = env_value("EMAIL_HOST", env.str, default="127.0.0.1")
EMAIL_PORT = env_value("EMAIL_PORT", env.int, default=25)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env_value(
    "DEFAULT_FROM_EMAIL", env.str, default="Meterbook <no-reply@meterbook.local>"
)
# Public base URL used in links inside emails (invitations).
PUBLIC_BASE_URL = env_value("PUBLIC_BASE_URL", env.url, default="http://127.0.0.1:8000").geturl()

# --- Celery --------------------------------------------------------------------------
CELERY_BROKER_URL = env_value("CELERY_BROKER_URL", env.str, default="")
CELERY_RESULT_BACKEND = env_value("CELERY_RESULT_BACKEND", env.str, default=CELERY_BROKER_URL)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_RESULT_EXPIRES = 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publishing gives up at once when the broker is down (kombu would otherwise retry for
# ~6 s): request paths that enqueue work (ingest's threshold check, alert wake-ups) have a
# fallback or a Beat sweep, and must not hang on an outage.
CELERY_BROKER_TRANSPORT_OPTIONS = {"max_retries": 1, "interval_start": 0, "interval_step": 0.1}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"


# --- Cache: the broker's Redis (the API's per-key rate limits live here) --------------------
def redis_cache_url(broker_url: str) -> str:
    """The broker's Redis as a URL redis-py understands.

    Celery names a unix socket ``redis+socket:///path?virtual_host=N``; redis-py (and so
    Django's RedisCache) wants ``unix:///path?db=N``. TCP URLs are the same for both.
    """
    parts = urlsplit(broker_url)
    if parts.scheme in ("redis", "rediss"):
        return broker_url
    if parts.scheme == "redis+socket":
        query = dict(parse_qsl(parts.query))
        if "virtual_host" in query:
            query["db"] = query.pop("virtual_host")
        return f"unix://{parts.path}" + (f"?{urlencode(query)}" if query else "")
    raise ImproperlyConfigured(
        "Environment variable CELERY_BROKER_URL is invalid: the cache and the API's rate "
        "limits need Redis (redis://host:port/db or redis+socket:///path/redis.sock)."
    )


if CELERY_BROKER_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_cache_url(CELERY_BROKER_URL),
            # Shares the broker's database: the prefix keeps cache keys apart from Celery's.
            "KEY_PREFIX": "meterbook-cache",
            # A stalled Redis must not hold API requests for redis-py's default 5 s.
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    # Only processes that never serve the API run without a broker (one-off commands).
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def env_rate(name: str, *, default: str) -> str:
    """A rate limit such as ``100/s`` (per second, minute, hour or day)."""
    rate = env_value(name, env.str, default=default).strip()
    if not re.fullmatch(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)", rate):
        raise ImproperlyConfigured(
            f"Environment variable {name} is invalid: {rate!r} is not a rate like 100/s."
        )
    return rate


# --- REST API ------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.api.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.api.permissions.HasApiKey"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "accounts.api.pagination.CreatedCursorPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "accounts.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    # Requests per API key, counted in Redis (accounts.api.throttling.ApiKeyRateThrottle,
    # for every endpoint; a view picks a named rate per method with `throttle_scopes`).
    # Ingest is generous (each request carries up to 10,000 events); reads get less.
    "DEFAULT_THROTTLE_CLASSES": ["accounts.api.throttling.ApiKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "events": env_rate("API_RATE_LIMIT_EVENTS", default="100/s"),
        "api": env_rate("API_RATE_LIMIT", default="50/s"),
    },
}
# The largest body POST /api/v1/events reads; a larger one is refused (413) unread.
METERING_EVENTS_MAX_BODY_BYTES = env_value(
    "METERING_EVENTS_MAX_BODY_BYTES", env.int, default=10 * 1024 * 1024
)
SPECTACULAR_SETTINGS = {
    "TITLE": "Meterbook API",
    "DESCRIPTION": (
        "Usage-based billing intelligence. Authenticate with `Authorization: Bearer <api key>`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # Swagger UI and Redoc from the sidecar package's static files, never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several components have a "status"; give each set of choices its own name.
    "ENUM_NAME_OVERRIDES": {
        "CustomerStatusEnum": "accounts.models.Customer.Status",
        "EventStatusEnum": "metering.api.serializers.EVENT_STATUSES",
        "VoidStatusEnum": "metering.api.serializers.VOID_STATUSES",
    },
    # validatorUrl: Swagger UI would otherwise load a badge from validator.swagger.io.
    "SWAGGER_UI_SETTINGS": {
        "deepLinking": True,
        "persistAuthorization": True,
        "validatorUrl": None,
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_value("LOG_LEVEL", env.str, default="INFO")},
}

# The batch track rechecks this many recent hours every run, plus the hours that late or
# voided events touched since the previous run (less a margin for in-flight batches).
METERING_RECONCILE_RECENT_HOURS = env_value("METERING_RECONCILE_RECENT_HOURS", env.int, default=3)
METERING_RECONCILE_MARGIN_MINUTES = env_value(
    "METERING_RECONCILE_MARGIN_MINUTES", env.int, default=10
)

# A closed period's draft waits this long for stragglers (events of the period still in
# flight) and is re-rated before it finalizes; finance can finalize earlier.
INVOICING_FINALIZE_GRACE_MINUTES = env_value(
    "INVOICING_FINALIZE_GRACE_MINUTES", env.int, default=60
)
INVOICING_PAYMENT_TERMS_DAYS = env_value("INVOICING_PAYMENT_TERMS_DAYS", env.int, default=30)

# An invitation link stays valid this long.
INVITATION_TTL_DAYS = env_value("INVITATION_TTL_DAYS", env.int, default=7)

# --- Stripe (invoicing.stripe_gateway) -------------------------------------------------
# No key: Stripe sync is off. No base: Stripe's real API (tests point it at loopback fakes).
STRIPE_API_KEY = env_value("STRIPE_API_KEY", env.str, default="")
STRIPE_API_BASE = env_value("STRIPE_API_BASE", env.str, default="")
STRIPE_WEBHOOK_SECRET = env_value("STRIPE_WEBHOOK_SECRET", env.str, default="")

# --- Alerts: outbound deliveries ---------------------------------------------------------
# Customer webhook/Slack/Teams URLs may never reach loopback, private, link-local or metadata
# addresses; these CIDRs are the only exceptions (tests list their loopback receivers).
ALERTS_OUTBOUND_ALLOWED_NETWORKS = env_value(
    "ALERTS_OUTBOUND_ALLOWED_NETWORKS", env.list, default=[]
)
# The demo records deliveries as skipped instead of sending them anywhere.
ALERTS_OUTBOUND_DRY_RUN = env_value("ALERTS_OUTBOUND_DRY_RUN", env.bool, default=False)

"""Local development and the demo: debug on, a fixed dev-only secret, mail to the console."""

from .base import *  # noqa: F403
from .base import env, env_bool, env_value

DEBUG = env_bool("DEBUG", default=True)
SECRET_KEY = SECRET_KEY or "dev-only-insecure-key-never-used-in-production"  # noqa: F405
ALLOWED_HOSTS = ALLOWED_HOSTS or ["127.0.0.1", "localhost"]  # noqa: F405
EMAIL_BACKEND = env_value(
    "EMAIL_BACKEND", env.str, default="django.core.mail.backends.console.EmailBackend"
)
# The demo's customers and their webhook, Slack and Teams URLs are made up: alerts are
# recorded as skipped (a "dry_run" attempt), never sent. Set it to false to try real channels.
ALERTS_OUTBOUND_DRY_RUN = env_value("ALERTS_OUTBOUND_DRY_RUN", env.bool, default=True)

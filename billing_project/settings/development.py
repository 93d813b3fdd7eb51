"""Local development and the demo: debug on, a fixed dev-only secret, mail to the console."""

from .base import *  # noqa: F403
from .base import env, env_bool, env_value

DEBUG = env_bool("DEBUG", default=True)
SECRET_KEY = SECRET_KEY or "dev-only-insecure-key-never-used-in-production"  # noqa: F405
ALLOWED_HOSTS = ALLOWED_HOSTS or ["127.0.0.1", "localhost"]  # noqa: F405
EMAIL_BACKEND = env_value(
    "EMAIL_BACKEND", env.str, default="django.core.mail.backends.console.EmailBackend"
)

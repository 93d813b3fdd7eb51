"""Settings are read from the environment at start and fail loudly, naming the variable.

Each case starts a fresh interpreter (settings are read once per process) with
``django.setup()``, exactly as a web or worker process would start.
"""

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings

SETUP = "import django; django.setup()"
GOOD_SECRET = "x7!kP2#qL9$mN4^vB8&cR1*tY6(wZ3)hJ5-fD0_gS2+eA9=uI4"
PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "billing_project.settings.production",
    "DATABASE_URL": "postgres://meterbook@db.internal:5432/meterbook",
    "SECRET_KEY": GOOD_SECRET,
    "ALLOWED_HOSTS": "meterbook.example.com",
}
# Variables the settings read; cleared so the developer's shell cannot leak into a case.
READ_BY_SETTINGS = [
    "DATABASE_URL", "SECRET_KEY", "ALLOWED_HOSTS", "DEBUG", "DB_CONN_MAX_AGE", "EMAIL_BACKEND",
    "EMAIL_HOST", "EMAIL_PORT", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "LOG_LEVEL",
    "INVITATION_TTL_DAYS", "PUBLIC_BASE_URL", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS",
    "CSRF_TRUSTED_ORIGINS", "DEFAULT_FROM_EMAIL", "DJANGO_ALLOW_ASYNC_UNSAFE",
    "STRIPE_API_KEY", "STRIPE_API_BASE", "STRIPE_WEBHOOK_SECRET",
    "INVOICING_FINALIZE_GRACE_MINUTES", "INVOICING_PAYMENT_TERMS_DAYS",
]  # fmt: skip


def start(env_overrides: dict, code: str = SETUP) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in READ_BY_SETTINGS}
    env.update(env_overrides)
    env = {k: v for k, v in env.items() if v is not None}
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_refuses(result: subprocess.CompletedProcess, variable: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr.strip().splitlines()[-1], result.stderr


def test_production_starts_with_a_complete_environment():
    result = start(PRODUCTION)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", ["SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL"])
def test_production_refuses_to_start_without(missing):
    assert_refuses(start({**PRODUCTION, missing: None}), missing)


def test_production_refuses_a_short_secret_key():
    assert_refuses(start({**PRODUCTION, "SECRET_KEY": "too-short"}), "SECRET_KEY")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DB_CONN_MAX_AGE", "abc"),
        ("DATABASE_URL", "mysql://root@127.0.0.1:3306/meterbook"),
        ("DATABASE_URL", "not a url at all"),
        ("EMAIL_PORT", "twenty-five"),
        ("INVOICING_FINALIZE_GRACE_MINUTES", "an hour"),
        ("SECURE_HSTS_SECONDS", "1y"),
        ("INVITATION_TTL_DAYS", "seven"),
        ("SECURE_SSL_REDIRECT", "ture"),
    ],
)
def test_a_malformed_value_fails_at_start_naming_the_variable(variable, value):
    assert_refuses(start({**PRODUCTION, variable: value}), variable)


def test_development_also_fails_loudly_on_a_malformed_value():
    env = {**PRODUCTION, "DJANGO_SETTINGS_MODULE": "billing_project.settings.development"}
    assert_refuses(start({**env, "EMAIL_PORT": "x"}), "EMAIL_PORT")
    assert_refuses(start({**env, "DEBUG": "maybe"}), "DEBUG")


def test_production_is_secure_by_default():
    code = SETUP + (
        "; from django.conf import settings as s; import json; print(json.dumps({"
        "'DEBUG': s.DEBUG, 'SESSION_COOKIE_SECURE': s.SESSION_COOKIE_SECURE,"
        "'CSRF_COOKIE_SECURE': s.CSRF_COOKIE_SECURE, 'HSTS': s.SECURE_HSTS_SECONDS,"
        "'HSTS_SUB': s.SECURE_HSTS_INCLUDE_SUBDOMAINS, 'SSL_REDIRECT': s.SECURE_SSL_REDIRECT,"
        "'ALLOWED_HOSTS': s.ALLOWED_HOSTS}))"
    )
    result = start({**PRODUCTION, "DEBUG": "true"}, code)
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["DEBUG"] is False  # DEBUG from the environment is ignored in production
    assert values["SESSION_COOKIE_SECURE"] and values["CSRF_COOKIE_SECURE"]
    assert values["HSTS"] >= 31_536_000 and values["HSTS_SUB"]
    assert values["SSL_REDIRECT"]
    assert values["ALLOWED_HOSTS"] == ["meterbook.example.com"]


def test_production_passes_the_deploy_checks():
    code = (
        SETUP + "; from django.core.management import call_command;"
        " call_command('check', deploy=True, fail_level='WARNING')"
    )
    result = start(PRODUCTION, code)
    assert result.returncode == 0, result.stderr


def test_the_test_profile_keeps_mail_in_memory_and_hashing_fast():
    assert settings.EMAIL_BACKEND == "django.core.mail.backends.locmem.EmailBackend"
    assert settings.PASSWORD_HASHERS == ["django.contrib.auth.hashers.MD5PasswordHasher"]

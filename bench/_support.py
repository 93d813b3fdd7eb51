"""Shared plumbing for the benchmarks: a scratch database and a Django set-up inside it.

Each benchmark runs in its own database (``<DATABASE_URL's name>_bench``), created fresh
and migrated, so figures never depend on what a developer's database holds.
"""

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent


def bench_database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        sys.exit(
            "DATABASE_URL is not set: run through the launcher, e.g.\n"
            "  .venv/bin/python -m billing_project.launcher run -- .venv/bin/python bench/ingest.py"
        )
    parts = urlsplit(url)
    name = parts.path.lstrip("/") or "postgres"
    return urlunsplit(parts._replace(path=f"/{name}_bench"))


def admin_conninfo(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/postgres", scheme="postgresql"))


def fresh_database(url: str) -> None:
    """Drop and recreate the scratch database, then migrate it."""
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_conninfo(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "billing_project.settings.test",
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "billing_project.settings.test"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def create_meters() -> None:
    """The two meters both benchmarks measure: API calls by endpoint and region, and GB."""
    from metering import services

    services.meter_create(
        actor=None,
        code="api_call",
        name="API calls",
        unit_label="calls",
        aggregation="count",
        group_by=["endpoint", "region"],
    )
    services.meter_create(
        actor=None,
        code="data_processed",
        name="Data processed",
        unit_label="GB",
        aggregation="sum",
        value_property="gb",
    )


def drop_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_conninfo(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]

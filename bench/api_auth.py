"""How much does API-key authentication cost per request?

Prints operations per second for:
  * baseline: ``ApiKey.objects.get(pk=…)`` — one indexed lookup of the same row;
  * ``api_key_authenticate(token)`` — what every API request pays;
  * a full ``GET /api/v1/me`` through Django + DRF with that key, against
  * a request to an unknown ``/api/v1/`` URL (routing + JSON 404, no authentication).
Runs in its own throwaway database (``test_<name>``, created and dropped here).
"""

import logging
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings.test")

import django

django.setup()

from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

ROUNDS = 5
N = int(os.environ.get("BENCH_N", "2000"))


def rate(fn, n=N) -> float:
    """Best-of-ROUNDS operations per second (the least disturbed round on a noisy machine)."""
    rates = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        rates.append(n / (time.perf_counter() - start))
    return max(rates), statistics.median(rates)


def main() -> None:
    logging.getLogger("django.request").setLevel(logging.ERROR)  # the 404 baseline is expected
    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        from accounts import services
        from accounts.models import ApiKey

        key, token = services.api_key_create(
            actor=None, name="bench", kind="op", scopes=["customers:read"]
        )
        client = Client()
        auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

        rows = [
            ("baseline: ApiKey pk lookup", rate(lambda: ApiKey.objects.get(pk=key.pk))),
            ("api_key_authenticate(token)", rate(lambda: services.api_key_authenticate(token))),
            ("baseline: GET unknown /api/v1 URL", rate(lambda: client.get("/api/v1/nope"), N // 2)),
            (
                "GET /api/v1/me (authenticated)",
                rate(lambda: client.get("/api/v1/me", **auth), N // 2),
            ),
        ]
        assert client.get("/api/v1/me", **auth).status_code == 200
        print(f"{'operation':<38}{'best ops/s':>12}{'median ops/s':>14}")
        for name, (best, median) in rows:
            print(f"{name:<38}{best:>12,.0f}{median:>14,.0f}")
        print(f"authentication cost vs one pk lookup:  {rows[0][1][0] / rows[1][1][0]:.2f}x")
        print(f"/me vs unauthenticated JSON 404:        {rows[2][1][0] / rows[3][1][0]:.2f}x")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()

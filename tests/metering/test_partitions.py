"""Monthly partitions of the event store, created on demand."""

import pytest
from django.db import connection

from tests.concurrency import in_threads

pytestmark = pytest.mark.django_db(transaction=True)

MONTH, PARTITION = "2099-03-01", "metering_usageevent_2099_03"


@pytest.fixture
def far_month():
    yield MONTH
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {PARTITION}")


def test_concurrent_first_batches_of_a_month_create_its_partition_once(far_month):
    def ensure(_):
        with connection.cursor() as cursor:
            cursor.execute("SELECT metering_ensure_month_partition(%s::date)", [far_month])

    in_threads(16, ensure)  # fails on any thread's error (it lost the race with a 500)

    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [PARTITION])
        assert cursor.fetchone()[0]

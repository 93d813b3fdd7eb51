"""The tables ingest writes on every batch carry no index it does not need.

Each index is one more entry written per claimed key or new rollup row; these were once
added by default (Django indexes every foreign key) and cost ingest ~10%.
"""

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def index_columns(table: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT string_agg(a.attname, ',' ORDER BY k.ord)
            FROM pg_index i
            CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
            WHERE i.indrelid = %s::regclass
            GROUP BY i.indexrelid
            """,
            [table],
        )
        return {row[0] for row in cursor.fetchall()}


def test_the_key_table_has_only_its_primary_key():
    assert index_columns("metering_eventkey") == {"customer_id,idempotency_key"}


def test_rollups_have_no_index_the_unique_key_already_serves():
    indexes = index_columns("metering_usagerollup")
    assert "customer_id,meter_id,hour,dimensions" in indexes
    assert "customer_id" not in indexes
    assert "customer_id" not in index_columns("metering_usageuniquevalue")


def test_rollup_pages_keep_room_for_hot_updates():
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'metering_usagerollup'")
        assert cursor.fetchone()[0] == ["fillfactor=50"]

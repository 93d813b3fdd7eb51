"""Running work in threads that start together, each with its own database connection,
as concurrent API or Celery workers do. For tests that commit (``transaction=True``)."""

import threading

from django.db import connection


def in_threads(count, work):
    """Run ``work(i)`` in ``count`` threads released at once; return results in order.

    Fails the test if a thread raised or hung."""
    barrier = threading.Barrier(count)
    results, errors = [None] * count, []

    def run(i):
        try:
            connection.ensure_connection()
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors
    return results

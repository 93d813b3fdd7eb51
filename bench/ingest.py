"""Ingest throughput through the real HTTP API, against the machine's ceiling.

Generates N events for M customers (timestamps within the last hour, as live traffic is),
starts gunicorn on loopback with the real project, and POSTs them to /api/v1/events in
batches from several client threads. Prints accepted events/s, p50/p99 request latency and
the workers' peak memory, then — in the same run, same database server — the events/s of
a plain psycopg COPY of the same rows into a bare table with the same unique index.

    .venv/bin/python -m billing_project.launcher run -- .venv/bin/python bench/ingest.py
    ... bench/ingest.py --quick
"""

import argparse
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _support import (
    ROOT,
    bench_database_url,
    create_meters,
    drop_database,
    fresh_database,
    percentile,
    setup_django,
)

ENDPOINTS = ["/v1/search", "/v1/embed", "/v1/chat", "/v1/files", "/v1/models"]
REGIONS = ["eu-west", "us-east", "ap-south"]


def make_events(n: int, customers: list[str], seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    events = []
    for i in range(n):
        moment = (now - timedelta(seconds=rng.randrange(3600))).isoformat()
        customer = customers[rng.randrange(len(customers))]
        if i % 4:
            events.append(
                {
                    "idempotency_key": f"evt-{seed}-{i}",
                    "customer": customer,
                    "event_name": "api_call",
                    "timestamp": moment,
                    "properties": {
                        "endpoint": rng.choice(ENDPOINTS),
                        "region": rng.choice(REGIONS),
                    },
                }
            )
        else:
            events.append(
                {
                    "idempotency_key": f"evt-{seed}-{i}",
                    "customer": customer,
                    "event_name": "data_processed",
                    "timestamp": moment,
                    "properties": {"gb": round(rng.random() * 4, 3)},
                }
            )
    return events


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(url: str, workers: int, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "billing_project.settings.development",
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        # Benchmarks measure ingestion, not the limiter: lift it far above the load.
        "API_RATE_LIMIT_EVENTS": "100000/s",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "billing_project.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "sync",
            "--timeout",
            "120",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/schema/", timeout=2)
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    sys.exit("gunicorn did not start")


class RssSampler(threading.Thread):
    """Peak resident memory of any gunicorn worker while the load runs."""

    def __init__(self, parent_pid: int):
        super().__init__(daemon=True)
        self.parent = psutil.Process(parent_pid)
        self.peak_mb = 0.0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            for child in self.parent.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    self.peak_mb = max(self.peak_mb, child.memory_info().rss / 2**20)
            time.sleep(0.05)


def post_batches(
    port: int, token: str, bodies: list[bytes], clients: int
) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    accepted = 0
    lock = threading.Lock()
    queue = list(enumerate(bodies))

    def work():
        nonlocal accepted
        while True:
            with lock:
                if not queue:
                    return
                _, body = queue.pop(0)
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/v1/events",
                data=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            started = time.perf_counter()
            with urllib.request.urlopen(request, timeout=120) as response:
                result = orjson.loads(response.read())
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                accepted += result["accepted"]

    threads = [threading.Thread(target=work) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, latencies, accepted


def copy_baseline(url: str, events: list[dict], customer_ids: dict[str, int], runs: int) -> float:
    """The machine's ceiling: COPY the same rows into a bare table with the same unique key.

    The best of ``runs`` attempts, each into a fresh table: on a shared, noisy machine a
    single run can land in a slow moment and flatter the ratio.
    """
    rows = [
        (
            customer_ids[e["customer"]],
            e["idempotency_key"],
            e["event_name"],
            datetime.fromisoformat(e["timestamp"]),
            orjson.dumps(e["properties"]).decode(),
        )
        for e in events
    ]
    best = 0.0
    with psycopg.connect(url.replace("postgres://", "postgresql://", 1)) as conn:
        for _ in range(runs):
            conn.execute("DROP TABLE IF EXISTS bench_copy")
            conn.execute(
                "CREATE TABLE bench_copy (customer_id bigint, idempotency_key text,"
                ' event_name text, "timestamp" timestamptz, properties jsonb)'
            )
            conn.execute("CREATE UNIQUE INDEX ON bench_copy (customer_id, idempotency_key)")
            conn.commit()
            started = time.perf_counter()
            with conn.cursor() as cursor:
                for offset in range(0, len(rows), 10_000):
                    with cursor.copy(
                        "COPY bench_copy (customer_id, idempotency_key, event_name,"
                        ' "timestamp", properties) FROM STDIN'
                    ) as copy:
                        for row in rows[offset : offset + 10_000]:
                            copy.write_row(row)
                    conn.commit()
            best = max(best, len(rows) / (time.perf_counter() - started))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    parser.add_argument(
        "--copy-runs", type=int, default=3, help="COPY baseline attempts (the best counts)"
    )
    parser.add_argument("--quick", action="store_true", help="30,000 events")
    args = parser.parse_args()
    if args.quick:
        args.events = 30_000

    url = bench_database_url()
    print(
        f"scratch database: {url.rsplit('/', 1)[1]}; {args.events:,} events, "
        f"{args.customers} customers, "
        f"batches of {args.batch:,}, {args.workers} gunicorn workers, {args.clients} clients"
    )
    fresh_database(url)
    setup_django(url)
    from accounts import services as accounts

    customers = {}
    for i in range(args.customers):
        c = accounts.customer_create(
            actor=None,
            name=f"Bench {i}",
            external_id=f"bench-{i}",
            billing_email=f"b{i}@bench.example",
        )
        customers[c.external_id] = c.pk
    create_meters()
    _, token = accounts.api_key_create(actor=None, name="bench", kind="op", scopes=["events:write"])
    events = make_events(args.events, list(customers))
    bodies = [orjson.dumps(events[i : i + args.batch]) for i in range(0, len(events), args.batch)]

    port = free_port()
    server = start_gunicorn(url, args.workers, port)
    sampler = RssSampler(server.pid)
    try:
        post_batches(port, token, bodies[:1], 1)  # warm up the workers (imports, connections)
        sampler.start()
        elapsed, latencies, accepted = post_batches(port, token, bodies[1:], args.clients)
        sampler.stop.set()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    sent = sum(len(orjson.loads(b)) for b in bodies[1:])
    assert accepted == sent, f"only {accepted} of {sent} events were accepted"
    api_rate = accepted / elapsed
    copy_rate = copy_baseline(url, events, customers, args.copy_runs)
    drop_database(url)

    p50, p99 = percentile(latencies, 0.50) * 1000, percentile(latencies, 0.99) * 1000
    print(f"API ingest (dedup + rollups, HTTP):  {api_rate:>10,.0f} events/s")
    print(
        f"bare COPY with the unique index:     {copy_rate:>10,.0f} events/s"
        f" (best of {args.copy_runs})"
    )
    print(f"ratio API / COPY:                    {api_rate / copy_rate:>10.2f}")
    print(f"request latency for {args.batch:,} events:  p50 {p50:,.0f} ms   p99 {p99:,.0f} ms")
    print(f"peak worker RSS:                     {sampler.peak_mb:>10,.0f} MB")
    print(
        f"RESULT api_events_per_s={api_rate:.0f} copy_events_per_s={copy_rate:.0f} "
        f"ratio={api_rate / copy_rate:.2f} p50_ms={p50:.0f} p99_ms={p99:.0f} "
        f"peak_rss_mb={sampler.peak_mb:.0f}"
    )


if __name__ == "__main__":
    main()

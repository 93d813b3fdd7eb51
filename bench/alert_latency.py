"""From usage to a signed webhook: threshold crossings through the whole real path.

N customers each have a threshold rule at 1 call and a webhook endpoint on a loopback
receiver in this process. Each POST to the real HTTP ingest API (gunicorn) crosses one
customer's level: the request's after-commit check fires the alert and writes its delivery
(the outbox), a Celery task on the real broker wakes a real worker, which signs and POSTs
it. The receiver verifies each signature (Standard Webhooks) and notes when it arrived;
latency is from the ingest response to the webhook received, per crossing.

Baseline in the same run: a signed webhook POSTed straight from this process to the same
receiver (the floor any delivery could reach), so the ratio says what the pipeline costs.

    .venv/bin/python -m billing_project.launcher run -- .venv/bin/python bench/alert_latency.py
    ... bench/alert_latency.py --crossings 200
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

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
from ingest import free_port, start_gunicorn

BROKER_DB = 13  # a Redis database of its own: no stray messages from tests or the demo


class Receiver:
    """Records when each customer's alert webhook arrived, after verifying its signature."""

    def __init__(self, secrets: dict[str, str]):
        from standardwebhooks.webhooks import Webhook

        self.arrived: dict[str, float] = {}
        self.bad = 0
        self.all_in = threading.Event()
        self.expected = 0
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.perf_counter()
                customer = self.path.rsplit("/", 1)[1]
                try:
                    payload = Webhook(secrets[customer]).verify(body, dict(self.headers))
                    ok = payload["data"]["customer"] == customer
                except Exception:
                    ok = False
                with lock:
                    if not ok:
                        receiver.bad += 1
                    else:
                        receiver.arrived.setdefault(customer, now)
                    if len(receiver.arrived) >= receiver.expected:
                        receiver.all_in.set()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, customer: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{customer}"


def broker_url() -> str:
    url = os.environ.get("CELERY_BROKER_URL") or "redis://127.0.0.1:6379/0"
    parts = urlsplit(url)
    if parts.scheme == "redis+socket":
        return f"redis+socket://{parts.path}?virtual_host={BROKER_DB}"
    return urlunsplit(parts._replace(path=f"/{BROKER_DB}"))


def start_worker(env: dict, concurrency: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "billing_project", "worker",
            "-Q", "notifications,alerts", "--concurrency", str(concurrency),
            "--loglevel", "WARNING", "--hostname", f"bench{os.getpid()}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )  # fmt: skip
    return process


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--crossings", type=int, default=1000)
    parser.add_argument(
        "--rate",
        type=float,
        default=10.0,
        help="crossings per second sent (0: as fast as the clients go); each is an ingest "
        "request, and on 2 cores ingest at full speed starves the worker",
    )
    parser.add_argument("--clients", type=int, default=2, help="concurrent ingest clients")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--worker-concurrency", type=int, default=4)
    args = parser.parse_args()

    url = bench_database_url()
    broker = broker_url()
    print(
        f"scratch database: {url.rsplit('/', 1)[1]}; broker {broker}; {args.crossings:,} "
        f"crossings at {args.rate or 'full'}/s, {args.clients} ingest clients, "
        f"{args.web_workers} gunicorn workers, "
        f"worker concurrency {args.worker_concurrency}"
    )
    fresh_database(url)
    os.environ["ALERTS_OUTBOUND_ALLOWED_NETWORKS"] = "127.0.0.0/8"
    setup_django(url)
    from accounts import services as accounts
    from alerts.channels import send_webhook
    from alerts.models import Alert, AlertRule, Delivery
    from alerts.selectors.endpoints import endpoint_signing_secrets
    from alerts.services import endpoint_create

    create_meters()
    from metering.models import Meter

    calls = Meter.objects.get(code="api_call")
    names = [f"bench-{i}" for i in range(args.crossings)]
    secrets: dict[str, str] = {}
    receiver = Receiver(secrets)
    receiver.expected = args.crossings + 1
    for name in ["warm-up", *names]:
        customer = accounts.customer_create(
            actor=None, name=name, external_id=name, billing_email=f"{name}@bench.example"
        )
        AlertRule.objects.create(customer=customer, kind="threshold", meter=calls, levels=[1])
        endpoint = endpoint_create(actor=None, customer=customer, url=receiver.url(name))
        secrets[name] = endpoint_signing_secrets(endpoint)[0]
    _, token = accounts.api_key_create(actor=None, name="bench", kind="op", scopes=["events:write"])

    env = {
        **os.environ,
        "DATABASE_URL": url,
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": "",
        "DJANGO_SETTINGS_MODULE": "billing_project.settings.development",
        "DEBUG": "false",
        "ALERTS_OUTBOUND_DRY_RUN": "false",
        "ALERTS_OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8",
    }
    with_broker = {**os.environ, **env}
    port = free_port()
    os.environ.update(env)
    server = start_gunicorn(url, args.web_workers, port)
    worker = start_worker(with_broker, args.worker_concurrency)
    ingest_latencies: list[float] = []
    responded: dict[str, float] = {}
    lock = threading.Lock()
    try:
        queue = ["warm-up"]

        schedule: dict[str, float] = {}

        def client():
            while True:
                with lock:
                    if not queue:
                        return
                    name = queue.pop(0)
                due = schedule.get(name)
                if due is not None:
                    time.sleep(max(0.0, due - time.perf_counter()))
                body = json.dumps(
                    [
                        {
                            "idempotency_key": f"cross-{name}",
                            "customer": name,
                            "event_name": "api_call",
                            "timestamp": datetime.now(UTC).isoformat(),
                            "properties": {"endpoint": "/v1/search", "region": "eu-west"},
                        }
                    ]
                ).encode()
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/api/v1/events",
                    data=body,
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                    },
                )
                started = time.perf_counter()
                with urllib.request.urlopen(request, timeout=60) as response:
                    accepted = json.loads(response.read())["accepted"]
                finished = time.perf_counter()
                assert accepted == 1, f"{name}: not accepted"
                with lock:
                    responded[name] = finished
                    ingest_latencies.append(finished - started)

        # One crossing end to end first: the worker has booted and every process is warm.
        client()
        deadline = time.monotonic() + 120
        while "warm-up" not in receiver.arrived and time.monotonic() < deadline:
            time.sleep(0.05)
        if "warm-up" not in receiver.arrived:
            sys.exit("the warm-up crossing never arrived: is the worker running?")
        ingest_latencies.clear()
        queue.extend(names)
        started = time.perf_counter()
        if args.rate:
            schedule.update({name: started + i / args.rate for i, name in enumerate(names)})
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sending = time.perf_counter() - started
        receiver.all_in.wait(timeout=120)
    finally:
        for process in (server, worker):
            os.killpg(process.pid, signal.SIGTERM)
        for process in (server, worker):
            process.wait(timeout=60)

    latencies = [
        receiver.arrived[name] - responded[name] for name in names if name in receiver.arrived
    ]
    early = sum(1 for v in latencies if v < 0)  # delivered before the client read its answer
    alerts = Alert.objects.count() - 1
    delivered = Delivery.objects.filter(status="delivered").count() - 1

    # Baseline: the same signed POST straight from here, no ingest, broker or worker.
    from alerts.models import WebhookEndpoint

    endpoint = WebhookEndpoint.objects.get(url=receiver.url(names[0]))
    direct = []
    for i in range(200):
        began = time.perf_counter()
        send_webhook(
            endpoint.url,
            msg_id=f"baseline-{i}",
            payload={"type": "baseline", "data": {"customer": names[0]}},
            secrets=[secrets[names[0]]],
        )
        direct.append(time.perf_counter() - began)
    drop_database(url)

    p50, p99 = percentile(latencies, 0.50) * 1000, percentile(latencies, 0.99) * 1000
    base50 = percentile(direct, 0.50) * 1000
    i50, i99 = percentile(ingest_latencies, 0.50) * 1000, percentile(ingest_latencies, 0.99) * 1000
    print(
        f"crossings sent in {sending:.1f} s; alerts {alerts:,}; deliveries delivered {delivered:,}"
    )
    received = len(receiver.arrived) - 1
    print(f"webhooks received and verified: {received:,} (bad signatures {receiver.bad})")
    print(f"ingest response -> webhook received: p50 {p50:,.0f} ms   p99 {p99:,.0f} ms")
    print(f"  ({early} arrived before their ingest response was read: counted as negative)")
    print(f"ingest request latency:              p50 {i50:,.0f} ms   p99 {i99:,.0f} ms")
    print(f"baseline, direct signed POST:        p50 {base50:,.1f} ms")
    print(f"ratio pipeline p50 / direct POST p50: {p50 / base50:,.1f}")
    print(
        f"RESULT delivered={received} p50_ms={p50:.0f} p99_ms={p99:.0f} "
        f"rate_per_s={args.rate or received / sending:.0f} "
        f"baseline_p50_ms={base50:.1f} ingest_p50_ms={i50:.0f}"
    )


if __name__ == "__main__":
    main()

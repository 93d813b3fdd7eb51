"""Stripe on loopback for tests: localstripe, a fake for what it lacks, and a fault proxy.

The real ``stripe`` SDK talks HTTP to a :class:`~tests.stripe_servers.fault_proxy.FaultProxy`,
which sends ``/v1/customers*`` to localstripe and everything else to
:class:`~tests.stripe_servers.fake_stripe.FakeStripe`. Fixtures live in ``fixtures.py``.

This module holds the few helpers the three servers share.
"""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 (keep-alive, as the SDK's requests session expects), no access log."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle on, each answer waits ~40 ms for
    # the client's delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):
        pass

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_bytes(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve_in_thread(handler: type[BaseHTTPRequestHandler], name: str, **attrs):
    """A ``ThreadingHTTPServer`` on 127.0.0.1 and a free port, serving from a daemon thread.

    ``attrs`` are set on the server so the handler reaches its owner as ``self.server.<attr>``.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    for key, value in attrs.items():
        setattr(server, key, value)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
    )
    thread.start()
    return server


def server_url(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


def stop_server(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()

"""A loopback HTTP proxy in front of the Stripe fakes that injects faults on demand.

The SDK points at :attr:`FaultProxy.url` (``base_addresses={"api": proxy.url}``); the proxy
forwards each request to the first upstream whose path regex matches (``routes``), unless a
queued fault matches the request first::

    proxy.on("POST", r"^/v1/invoices$").respond(500)
    proxy.on("POST", r"^/v1/invoices$", times=2).respond(
        429, headers={"Retry-After": "1"}, stripe_should_retry=False
    )
    proxy.on("POST", r"^/v1/invoices$").forward_then_hang(1.0)  # created, answer too late
    proxy.on("GET", r"^/v1/invoices/").drop_connection()

Faults are used in the order they were queued; each serves ``times`` requests. Every request
that reached the proxy is in :attr:`FaultProxy.log`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tests.stripe_servers import QuietHandler, serve_in_thread, server_url, stop_server

# Per hop, never forwarded (RFC 9110 7.6.1), plus the ones the proxy sets itself.
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "date",
    "server",
}
UPSTREAM_TIMEOUT_SECONDS = 30


@dataclass
class Fault:
    method: str
    path: re.Pattern
    action: str  # "respond" | "forward_then_hang" | "drop_connection"
    remaining: int
    status: int = 0
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    forward: bool = False
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return self.remaining > 0 and self.method == method and bool(self.path.search(path))


@dataclass(frozen=True)
class Passage:
    """One request that reached the proxy and what became of it."""

    method: str
    path: str
    idempotency_key: str | None
    upstream: str | None  # None: answered by a fault without forwarding
    status: int | None  # what the upstream or the fault answered; None: connection dropped
    fault: str | None


def _default_error(status: int) -> dict:
    if status == 429:
        return {
            "error": {
                "type": "invalid_request_error",
                "code": "rate_limit",
                "message": "Too many requests hit the API too quickly (fault proxy).",
                "param": None,
            }
        }
    kind = "api_error" if status >= 500 else "invalid_request_error"
    message = f"Injected HTTP {status} (fault proxy)."
    return {"error": {"type": kind, "code": None, "message": message, "param": None}}


class FaultRule:
    """What :meth:`FaultProxy.on` returns: pick the fault for the matching request(s)."""

    def __init__(self, proxy: FaultProxy, method: str, path_regex: str, times: int):
        self._proxy = proxy
        self._method = method.upper()
        self._path = re.compile(path_regex)
        self._times = times

    def _queue(self, action: str, **kwargs) -> Fault:
        fault = Fault(self._method, self._path, action, self._times, **kwargs)
        self._proxy._add(fault)
        return fault

    def respond(
        self,
        status: int,
        *,
        body: dict | bytes | None = None,
        headers: dict[str, str] | None = None,
        stripe_should_retry: bool | None = None,
    ) -> Fault:
        """Answer ``status`` without forwarding (a Stripe error body unless ``body``)."""
        headers = {"Content-Type": "application/json", **(headers or {})}
        if stripe_should_retry is not None:
            headers["Stripe-Should-Retry"] = "true" if stripe_should_retry else "false"
        if body is None:
            body = _default_error(status)
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self._queue("respond", status=status, body=raw, headers=headers)

    def forward_then_hang(self, seconds: float) -> Fault:
        """Forward (so Stripe does act), then hold the answer ``seconds`` before sending it.

        With ``seconds`` past the client's read timeout the client sees a timeout for a
        request that did take effect.
        """
        return self._queue("forward_then_hang", seconds=seconds)

    def drop_connection(self, *, forward: bool = False) -> Fault:
        """Close the connection without an answer (after forwarding, if ``forward``)."""
        return self._queue("drop_connection", forward=forward)


class _Handler(QuietHandler):
    def _serve(self) -> None:
        self.server.proxy._serve(self)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve


class FaultProxy:
    def __init__(self, routes: Sequence[tuple[str, str]]):
        """``routes``: ``(path regex, upstream base URL)`` pairs, the first match wins."""
        self._routes = [(re.compile(pattern), upstream.rstrip("/")) for pattern, upstream in routes]
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._log: list[Passage] = []
        self._hangs: set[threading.Event] = set()
        self._server = serve_in_thread(_Handler, "stripe-fault-proxy", proxy=self)
        self.url = server_url(self._server)

    # --- test API ---------------------------------------------------------------------------

    def on(self, method: str, path_regex: str, *, times: int = 1) -> FaultRule:
        """The next ``times`` requests with ``method`` whose path matches ``path_regex``."""
        return FaultRule(self, method, path_regex, times)

    @property
    def log(self) -> list[Passage]:
        with self._lock:
            return list(self._log)

    def passages(self, method: str | None = None, path_regex: str = "") -> list[Passage]:
        return [
            p
            for p in self.log
            if (method is None or p.method == method.upper()) and re.search(path_regex, p.path)
        ]

    @property
    def pending_faults(self) -> list[Fault]:
        with self._lock:
            return [f for f in self._faults if f.remaining > 0]

    def clear_faults(self) -> None:
        """Drop queued faults and release any request held by ``forward_then_hang``."""
        with self._lock:
            self._faults.clear()
            hangs, self._hangs = self._hangs, set()
        for hang in hangs:
            hang.set()

    def reset(self) -> None:
        self.clear_faults()
        with self._lock:
            self._log.clear()

    def close(self) -> None:
        self.clear_faults()
        stop_server(self._server)

    # --- serving ----------------------------------------------------------------------------

    def _add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    fault.hits += 1
                    return fault
        return None

    def _record(self, passage: Passage) -> None:
        with self._lock:
            self._log.append(passage)

    def _upstream(self, path: str) -> str:
        for pattern, upstream in self._routes:
            if pattern.search(path):
                return upstream
        raise LookupError(f"no route for {path}")

    def _serve(self, handler: _Handler) -> None:
        method = handler.command
        path = urlsplit(handler.path).path
        key = handler.headers.get("Idempotency-Key")
        body = handler.read_body()
        fault = self._take_fault(method, path)
        action = fault.action if fault else None

        if fault and action == "respond":
            self._record(Passage(method, path, key, None, fault.status, action))
            handler.send_bytes(fault.status, fault.body, fault.headers)
            return
        if fault and action == "drop_connection" and not fault.forward:
            self._record(Passage(method, path, key, None, None, action))
            self._drop(handler)
            return

        upstream = self._upstream(path)
        try:
            status, headers, payload = self._forward(upstream, handler, body)
        except OSError as exc:
            self._record(Passage(method, path, key, upstream, 502, "upstream_error"))
            error = {"error": {"type": "api_error", "message": f"proxy: {exc}"}}
            handler.send_bytes(502, json.dumps(error).encode(), {})
            return
        self._record(Passage(method, path, key, upstream, status, action))

        if action == "drop_connection":
            self._drop(handler)
            return
        if action == "forward_then_hang":
            hang = threading.Event()
            with self._lock:
                self._hangs.add(hang)
            hang.wait(fault.seconds)
            handler.close_connection = True
            headers["Connection"] = "close"
        try:
            handler.send_bytes(status, payload, headers)
        except OSError:  # the client gave up waiting (the point of forward_then_hang)
            handler.close_connection = True

    @staticmethod
    def _forward(upstream: str, handler: _Handler, body: bytes) -> tuple[int, dict, bytes]:
        target = urlsplit(upstream)
        connection = http.client.HTTPConnection(
            target.hostname, target.port, timeout=UPSTREAM_TIMEOUT_SECONDS
        )
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            connection.request(handler.command, handler.path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            out = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
            return response.status, out, payload
        finally:
            connection.close()

    @staticmethod
    def _drop(handler: _Handler) -> None:
        handler.close_connection = True
        with contextlib.suppress(OSError):
            handler.connection.shutdown(socket.SHUT_RDWR)

"""POST to a customer-supplied URL without letting the URL reach inside our network.

The host is resolved once, every answer is vetted (`addresses.check_address`), and the
socket connects to a vetted address while the Host header and TLS SNI/certificate check
use the name: nothing is resolved again between the check and the connect. No proxies,
no redirects (a 3xx is a failed attempt), a connect timeout and an overall deadline.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from django.utils import timezone

from .addresses import check_address, literal_address
from .outcome import EXCERPT_CHARS, AttemptOutcome, AttemptStatus, OutboundRefused

CONNECT_TIMEOUT_SECONDS = 5.0
TOTAL_TIMEOUT_SECONDS = 15.0
# We read this much of an answer at most; receivers owe us a status, not a body.
MAX_RESPONSE_BYTES = 8192
USER_AGENT = "Meterbook-Alerts/1"

# 4xx answers a later retry of the same request might get past.
_RETRYABLE_4XX = {408, 409, 425, 429}


@dataclass(frozen=True, slots=True)
class OutboundTarget:
    """A URL that passed the syntactic checks; `host` is ASCII, `path` includes the query."""

    scheme: str
    host: str
    port: int
    path: str


def parse_outbound_url(url: str) -> OutboundTarget:
    """Check a URL's form (no DNS): http(s) only, no credentials, canonical IP literals.

    Also usable when a customer saves an endpoint, for an early and clear error.
    """
    if not isinstance(url, str) or not url or any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise OutboundRefused("invalid_url", "the URL is empty or has spaces/control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise OutboundRefused("invalid_url", f"unparseable URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise OutboundRefused("scheme_not_allowed", f"only http and https, not {scheme!r}")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise OutboundRefused("credentials_in_url", "credentials in the URL are not allowed")
    if not parts.hostname:
        raise OutboundRefused("invalid_url", "the URL has no host")
    try:
        host = parts.hostname.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise OutboundRefused("invalid_url", f"invalid host name: {exc}") from exc
    if port == 0:
        raise OutboundRefused("invalid_url", "port 0 is not a port")
    ip = literal_address(host)
    if ip is not None:
        check_address(ip)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return OutboundTarget(scheme, host, port or (443 if scheme == "https" else 80), path)


def resolve_vetted(target: OutboundTarget) -> list[tuple]:
    """Resolve the host and vet every address; any blocked answer refuses the whole host.

    Refusing on one bad answer (rather than skipping it) also defeats a rebinding name
    that answers with a public and a private address. Returns getaddrinfo tuples.
    """
    infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    if not infos:
        raise socket.gaierror(f"no addresses for {target.host}")
    for info in infos:
        check_address(ipaddress.ip_address(info[4][0]))
    return infos


def _connect_first(infos: list[tuple], timeout: float) -> socket.socket:
    last_error: OSError | None = None
    for family, socktype, proto, _canon, sockaddr in infos:
        sock = socket.socket(family, socktype, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    assert last_error is not None
    raise last_error


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to addresses vetted beforehand; `host` stays the name for the Host header."""

    def __init__(self, target: OutboundTarget, infos: list[tuple], timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._infos = infos

    def connect(self) -> None:
        self.sock = _connect_first(self._infos, self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, target: OutboundTarget, infos: list[tuple], timeout: float) -> None:
        super().__init__(
            target.host, target.port, timeout=timeout, context=ssl.create_default_context()
        )
        self._infos = infos

    def connect(self) -> None:
        sock = _connect_first(self._infos, self.timeout)
        # SNI and certificate name check against the name, not the IP we dialled.
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _retry_after(value: str | None) -> int | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0, int((when - timezone.now()).total_seconds()))


def _status_outcome(code: int, excerpt: str, location: str | None, **common) -> AttemptOutcome:
    if 200 <= code < 300:
        return AttemptOutcome(AttemptStatus.DELIVERED, code, excerpt, **common)
    if code == 410:
        return AttemptOutcome(
            AttemptStatus.ENDPOINT_GONE, code, excerpt, error_code="endpoint_gone",
            error_message="the receiver answered 410 Gone", **common,
        )  # fmt: skip
    if 300 <= code < 400:
        return AttemptOutcome(
            AttemptStatus.FAILED, code, excerpt, error_code="redirect_not_followed",
            error_message=f"redirects are not followed (Location: {(location or '')[:200]})",
            **common,
        )  # fmt: skip
    if code >= 500 or code in _RETRYABLE_4XX:
        return AttemptOutcome(
            AttemptStatus.FAILED, code, excerpt, error_code="http_error",
            error_message=f"the receiver answered {code}", **common,
        )  # fmt: skip
    return AttemptOutcome(
        AttemptStatus.FAILED_PERMANENT, code, excerpt, error_code="http_error",
        error_message=f"the receiver answered {code}", **common,
    )  # fmt: skip


def safe_post(
    url: str,
    *,
    body: bytes,
    headers: Mapping[str, str],
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    total_timeout: float = TOTAL_TIMEOUT_SECONDS,
) -> AttemptOutcome:
    """POST `body` to a customer-supplied URL; never raises for network or policy trouble."""
    started = time.monotonic()

    def finish(status: AttemptStatus, code: str, message: str) -> AttemptOutcome:
        return AttemptOutcome(
            status,
            duration_ms=int((time.monotonic() - started) * 1000),
            error_code=code,
            error_message=message[:500],
        )

    try:
        target = parse_outbound_url(url)
        infos = resolve_vetted(target)
    except OutboundRefused as exc:
        return finish(AttemptStatus.REFUSED, exc.code, exc.message)
    except (OSError, UnicodeError) as exc:  # gaierror: NXDOMAIN, resolver down
        return finish(AttemptStatus.FAILED, "dns_error", f"could not resolve the host: {exc}")

    deadline = started + total_timeout
    conn_class = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    conn = conn_class(target, infos, timeout=min(connect_timeout, total_timeout))
    watchdog: threading.Timer | None = None
    try:
        try:
            conn.connect()
        except TimeoutError as exc:
            return finish(AttemptStatus.FAILED, "connect_timeout", f"connect timed out: {exc}")
        except ssl.SSLError as exc:
            return finish(AttemptStatus.FAILED, "tls_error", f"TLS failed: {exc}")
        except OSError as exc:
            return finish(AttemptStatus.FAILED, "connect_error", f"could not connect: {exc}")

        # Per-read timeouts alone let a slow-drip receiver stretch an attempt forever;
        # the watchdog shuts the socket at the overall deadline.
        sock = conn.sock
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _shutdown, (sock,))
        watchdog.daemon = True
        watchdog.start()

        conn.putrequest("POST", target.path, skip_accept_encoding=True)
        sent = {k.lower() for k in headers}
        for name, value in headers.items():
            conn.putheader(name, value)
        if "user-agent" not in sent:
            conn.putheader("User-Agent", USER_AGENT)
        conn.putheader("Content-Length", str(len(body)))
        conn.putheader("Connection", "close")
        conn.endheaders(body)
        response = conn.getresponse()
        raw = response.read(MAX_RESPONSE_BYTES)
        excerpt = raw.decode("utf-8", "replace")[:EXCERPT_CHARS]
        outcome = _status_outcome(
            response.status,
            excerpt,
            response.getheader("Location"),
            duration_ms=int((time.monotonic() - started) * 1000),
            retry_after_seconds=_retry_after(response.getheader("Retry-After")),
        )
        return outcome
    except (OSError, http.client.HTTPException) as exc:
        if isinstance(exc, TimeoutError) or time.monotonic() >= deadline - 0.005:
            return finish(AttemptStatus.FAILED, "timeout", f"no answer within {total_timeout:g}s")
        if isinstance(exc, ssl.SSLError):
            return finish(AttemptStatus.FAILED, "tls_error", f"TLS failed: {exc}")
        return finish(AttemptStatus.FAILED, "connection_error", f"{type(exc).__name__}: {exc}")
    finally:
        if watchdog is not None:
            watchdog.cancel()
        conn.close()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)

"""HTTPS: the vetted IP is dialled while SNI and the certificate check use the host name."""

import shutil
import socket
import ssl
import subprocess
import threading

import pytest

from alerts.channels import AttemptStatus, safe_post

pytestmark = pytest.mark.skipif(not shutil.which("openssl"), reason="needs the openssl CLI")


@pytest.fixture
def tls_listener(tmp_path):
    """A TLS server on loopback with a self-signed certificate; records the SNI it sees."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=hooks.customer.test", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    seen = []
    context.sni_callback = lambda sslsock, name, ctx: seen.append(name)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], seen
    listener.close()
    thread.join(timeout=5)


def test_https_sends_the_name_as_sni_and_verifies_the_certificate(tls_listener, monkeypatch):
    port, seen = tls_listener
    real = socket.getaddrinfo
    monkeypatch.setattr(
        socket, "getaddrinfo", lambda host, p, *a, **k: real("127.0.0.1", p, *a, **k)
    )
    outcome = safe_post(f"https://hooks.customer.test:{port}/hook", body=b"{}", headers={})
    # Self-signed: verification is on, so the attempt fails before any request is sent.
    assert outcome.status == AttemptStatus.FAILED
    assert outcome.error_code == "tls_error"
    assert seen == ["hooks.customer.test"]

"""safe_post against real loopback receivers: outcomes per answer, no redirects, deadlines."""

import socket

import pytest

from alerts.channels import AttemptStatus, safe_post
from tests.alerts.receivers import Receiver, free_port


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


def post(url, **kwargs):
    return safe_post(url, body=b'{"a":1}', headers={"Content-Type": "application/json"}, **kwargs)


def test_2xx_is_delivered_with_body_headers_and_excerpt(receiver):
    receiver.respond(202, b"accepted, thanks")
    outcome = post(receiver.url("/hook?x=1"))
    assert outcome.status == AttemptStatus.DELIVERED and outcome.delivered
    assert outcome.status_code == 202
    assert outcome.response_excerpt == "accepted, thanks"
    assert outcome.duration_ms >= 0
    (request,) = receiver.requests
    assert request.path == "/hook?x=1"
    assert request.body == b'{"a":1}'
    assert request.headers["content-type"] == "application/json"
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"


def test_410_means_the_endpoint_is_gone(receiver):
    receiver.respond(410, b"gone")
    outcome = post(receiver.url())
    assert outcome.status == AttemptStatus.ENDPOINT_GONE
    assert (outcome.status_code, outcome.error_code) == (410, "endpoint_gone")
    assert not outcome.retryable


def test_redirect_is_not_followed_and_counts_as_a_failed_attempt(receiver):
    with Receiver() as target:
        receiver.respond(302, b"", headers={"Location": target.url("/elsewhere")})
        outcome = post(receiver.url())
        assert outcome.status == AttemptStatus.FAILED and outcome.retryable
        assert outcome.status_code == 302
        assert outcome.error_code == "redirect_not_followed"
        assert "/elsewhere" in outcome.error_message
        assert len(receiver.requests) == 1
        assert target.requests == []


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (500, AttemptStatus.FAILED),
        (503, AttemptStatus.FAILED),
        (429, AttemptStatus.FAILED),
        (408, AttemptStatus.FAILED),
        (400, AttemptStatus.FAILED_PERMANENT),
        (401, AttemptStatus.FAILED_PERMANENT),
        (404, AttemptStatus.FAILED_PERMANENT),
    ],
)
def test_error_statuses_are_classified(receiver, status, expected):
    receiver.respond(status, b"x" * 5000)
    outcome = post(receiver.url())
    assert outcome.status == expected
    assert outcome.status_code == status
    assert outcome.error_code == "http_error"
    assert len(outcome.response_excerpt) == 500  # a short excerpt, not the whole answer


def test_retry_after_is_reported(receiver):
    receiver.respond(429, b"slow down", headers={"Retry-After": "120"})
    outcome = post(receiver.url())
    assert outcome.retryable and outcome.retry_after_seconds == 120


def test_a_slow_receiver_is_a_retryable_timeout(receiver):
    receiver.respond(200, delay=2.0)
    outcome = post(receiver.url(), total_timeout=0.4)
    assert outcome.status == AttemptStatus.FAILED and outcome.retryable
    assert outcome.error_code == "timeout"
    assert outcome.duration_ms < 1500


def test_nothing_listening_is_a_retryable_connect_error():
    outcome = post(f"http://127.0.0.1:{free_port()}/hook")
    assert outcome.status == AttemptStatus.FAILED
    assert outcome.error_code == "connect_error"


def test_unknown_host_is_a_retryable_dns_error():
    outcome = post("http://no-such-host.invalid/hook")
    assert outcome.status == AttemptStatus.FAILED
    assert outcome.error_code == "dns_error"


def test_host_is_resolved_once_and_the_vetted_address_is_dialled(receiver, monkeypatch):
    """No second lookup between check and connect; the name stays in the Host header."""
    calls = []
    real = socket.getaddrinfo

    def fake_getaddrinfo(host, port, *args, **kwargs):
        calls.append(host)
        assert host == "hooks.customer.test"
        return real("127.0.0.1", port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    outcome = post(receiver.url(host="hooks.customer.test"))
    assert outcome.delivered
    assert calls == ["hooks.customer.test"]
    assert receiver.requests[0].headers["host"] == f"hooks.customer.test:{receiver.port}"


def test_localhost_by_name_reaches_an_allow_listed_receiver(receiver):
    outcome = post(receiver.url(host="localhost"))
    assert outcome.delivered
    assert receiver.requests[0].headers["host"] == f"localhost:{receiver.port}"

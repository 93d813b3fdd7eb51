"""Customer-supplied URLs never reach internal addresses, and nothing is even dialled.

The allow-list is emptied for these tests, and a real receiver listens on 127.0.0.1 so
a mistake would show up as a request it recorded.
"""

import socket

import pytest

from alerts.channels import AttemptStatus, OutboundRefused, parse_outbound_url, safe_post
from alerts.channels.addresses import check_address
from tests.alerts.receivers import Receiver


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


@pytest.fixture
def no_allow_list(settings):
    settings.ALERTS_OUTBOUND_ALLOWED_NETWORKS = []


@pytest.fixture
def dials(monkeypatch):
    """Every socket connect attempted during the test (each one refused as if by a
    firewall, so a test can also see what would have been dialled)."""
    attempts = []

    def refuse(self, address):
        attempts.append(address)
        raise ConnectionRefusedError(f"test refuses every connect ({address})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def post(url):
    return safe_post(url, body=b"{}", headers={"Content-Type": "application/json"})


LITERALS = [
    # (host as written in the URL, expected error code)
    ("127.0.0.1", "blocked_loopback"),
    ("127.5.6.7", "blocked_loopback"),
    ("[::1]", "blocked_loopback"),
    ("[::ffff:127.0.0.1]", "blocked_loopback"),  # IPv4-mapped
    ("[::ffff:7f00:1]", "blocked_loopback"),  # the same, in hex
    ("[::127.0.0.1]", "blocked_loopback"),  # IPv4-compatible (deprecated)
    ("[2002:7f00:1::]", "blocked_loopback"),  # 6to4 of 127.0.0.1
    ("[2002:a00:1::1]", "blocked_private"),  # 6to4 of 10.0.0.1
    ("[64:ff9b::10.0.0.1]", "blocked_private"),  # NAT64 of 10.0.0.1
    ("[64:ff9b::a9fe:a9fe]", "blocked_metadata"),  # NAT64 of 169.254.169.254
    ("[64:ff9b:1::1]", "blocked_private"),  # local-use NAT64 prefix
    ("10.1.2.3", "blocked_private"),
    ("172.16.0.1", "blocked_private"),
    ("172.31.255.254", "blocked_private"),
    ("192.168.1.1", "blocked_private"),
    ("100.64.0.1", "blocked_shared"),  # CGNAT
    ("100.127.255.254", "blocked_shared"),
    ("[fc00::1]", "blocked_private"),  # ULA
    ("[fd12:3456::1]", "blocked_private"),
    ("169.254.169.254", "blocked_metadata"),
    ("[fd00:ec2::254]", "blocked_metadata"),
    ("[::ffff:169.254.169.254]", "blocked_metadata"),
    ("169.254.10.10", "blocked_link_local"),
    ("[fe80::1]", "blocked_link_local"),
    ("224.0.0.1", "blocked_multicast"),
    ("239.255.255.250", "blocked_multicast"),
    ("[ff02::1]", "blocked_multicast"),
    ("0.0.0.0", "blocked_unspecified"),
    ("[::]", "blocked_unspecified"),
    ("240.0.0.1", "blocked_reserved"),
    ("192.0.2.10", "blocked_private"),  # documentation range
    (
        "\uff11\uff12\uff17.\uff10.\uff10.\uff11",
        "blocked_loopback",
    ),  # full-width digits become 127.0.0.1 (IDNA)
    # Odd spellings of 127.0.0.1: refused for the spelling itself.
    ("2130706433", "ip_encoding_not_canonical"),
    ("0177.0.0.1", "ip_encoding_not_canonical"),
    ("0x7f.1", "ip_encoding_not_canonical"),
    ("0x7f000001", "ip_encoding_not_canonical"),
    ("017700000001", "ip_encoding_not_canonical"),
    ("127.1", "ip_encoding_not_canonical"),
    ("127.0.1", "ip_encoding_not_canonical"),
    ("127.000.000.001", "ip_encoding_not_canonical"),
    ("127.0.0.1.", "ip_encoding_not_canonical"),
    ("0", "ip_encoding_not_canonical"),
]


@pytest.mark.usefixtures("no_allow_list")
@pytest.mark.parametrize(("host", "code"), LITERALS)
def test_internal_address_in_the_url_is_refused_without_connecting(receiver, dials, host, code):
    outcome = post(f"http://{host}:{receiver.port}/hook")
    assert outcome.status == AttemptStatus.REFUSED, outcome
    assert outcome.error_code == code
    assert outcome.error_message
    assert not outcome.retryable
    assert dials == []
    assert receiver.requests == []


@pytest.mark.parametrize(
    "host", ["2130706433", "0177.0.0.1", "0x7f.1", "127.1", "0x7f000001", "127.0.0.1."]
)
def test_odd_spellings_are_refused_even_when_the_address_is_allow_listed(receiver, dials, host):
    outcome = post(f"http://{host}:{receiver.port}/hook")
    assert outcome.error_code == "ip_encoding_not_canonical"
    assert dials == [] and receiver.requests == []


@pytest.mark.usefixtures("no_allow_list")
@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://example.com/hook", "scheme_not_allowed"),
        ("file:///etc/passwd", "scheme_not_allowed"),
        ("gopher://example.com:70/_x", "scheme_not_allowed"),
        ("example.com/hook", "scheme_not_allowed"),
        ("http://user:pass@example.com/hook", "credentials_in_url"),
        ("http://example.com@127.0.0.1/hook", "credentials_in_url"),
        ("http://token@example.com/hook", "credentials_in_url"),
        ("http:///hook", "invalid_url"),
        ("http://example.com:99999/hook", "invalid_url"),
        ("http://example.com:0/hook", "invalid_url"),
        ("http://exa mple.com/hook", "invalid_url"),
        ("http://example.com/ho\r\nX-Injected: 1", "invalid_url"),
        ("http://[fe80::1%25eth0]/hook", "invalid_url"),
        ("", "invalid_url"),
    ],
)
def test_malformed_or_unsupported_urls_are_refused(dials, url, code):
    with pytest.raises(OutboundRefused) as caught:
        parse_outbound_url(url)
    assert caught.value.code == code
    outcome = post(url)
    assert (outcome.status, outcome.error_code) == (AttemptStatus.REFUSED, code)
    assert dials == []


@pytest.mark.usefixtures("no_allow_list")
def test_localhost_by_name_is_refused(receiver, dials):
    outcome = post(f"http://localhost:{receiver.port}/hook")
    assert outcome.error_code == "blocked_loopback"
    assert dials == [] and receiver.requests == []


def fake_resolver(monkeypatch, answers):
    """Fake DNS at the edge of the world: getaddrinfo answers `answers` for any name."""

    def getaddrinfo(host, port, *args, **kwargs):
        return [
            (
                socket.AF_INET6 if ":" in ip else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (ip, port, 0, 0) if ":" in ip else (ip, port),
            )
            for ip in answers
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.usefixtures("no_allow_list")
@pytest.mark.parametrize(
    ("answers", "code"),
    [
        (["10.0.0.5"], "blocked_private"),
        (["169.254.169.254"], "blocked_metadata"),
        (["::ffff:127.0.0.1"], "blocked_loopback"),
        (["fd00:ec2::254"], "blocked_metadata"),
        # A rebinding name answering one public and one private address: refused whole.
        (["93.184.216.34", "192.168.0.10"], "blocked_private"),
        (["2606:2800:220:1::1", "::1"], "blocked_loopback"),
    ],
)
def test_a_name_resolving_to_an_internal_address_is_refused(monkeypatch, dials, answers, code):
    fake_resolver(monkeypatch, answers)
    outcome = post("https://hooks.customer.example/hook")
    assert (outcome.status, outcome.error_code) == (AttemptStatus.REFUSED, code)
    assert dials == []


@pytest.mark.usefixtures("no_allow_list")
def test_a_public_answer_is_dialled_at_exactly_that_address(monkeypatch, dials):
    fake_resolver(monkeypatch, ["93.184.216.34"])
    outcome = post("http://hooks.customer.example:8080/hook")
    assert outcome.error_code == "connect_error"  # `dials` refuses every connect
    assert dials == [("93.184.216.34", 8080)]


@pytest.mark.usefixtures("no_allow_list")
@pytest.mark.parametrize(
    "ip", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "2002:808:808::1"]
)
def test_public_addresses_pass(ip):
    check_address(ip)


def test_the_allow_list_admits_only_its_networks(settings):
    settings.ALERTS_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    check_address("127.0.0.1")
    with pytest.raises(OutboundRefused):
        check_address("::1")
    with pytest.raises(OutboundRefused):
        check_address("10.0.0.1")

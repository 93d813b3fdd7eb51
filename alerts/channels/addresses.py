"""Which network addresses a customer-supplied URL may reach (the SSRF policy).

Every address a host resolves to is checked, and the connection is then made to one of
those checked addresses (see `http.py`), so a DNS answer cannot change between check and
connect. Classification leans on the standard library's `ipaddress` tables; we add only
what they do not name: cloud metadata endpoints, the CGNAT range and IPv4 hidden in IPv6.
"""

from __future__ import annotations

import ipaddress
import socket

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .outcome import OutboundRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud instance metadata answers with credentials; named so the refusal says so.
_METADATA = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
}
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # CGNAT (RFC 6598): a provider's inside
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the last 32 bits are IPv4
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: site-chosen, opaque
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # RFC 2765 (SIIT)
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d


def allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The operator's exceptions (tests: their loopback receivers). Default: none."""
    try:
        return [
            ipaddress.ip_network(cidr, strict=False)
            for cidr in getattr(settings, "ALERTS_OUTBOUND_ALLOWED_NETWORKS", [])
        ]
    except ValueError as exc:
        raise ImproperlyConfigured(f"ALERTS_OUTBOUND_ALLOWED_NETWORKS: {exc}") from exc


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries, which is where traffic may really go."""
    found: list[ipaddress.IPv4Address] = []
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if ip in _NAT64 or ip in _IPV4_TRANSLATED:
        found.append(low32)
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:  # not :: or ::1, which are themselves
        found.append(low32)
    return found


def _block_reason(ip: IPAddress) -> str | None:
    """Why a plain address is off limits, as the suffix of an error code; None if global."""
    if ip in _METADATA:
        return "metadata"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link_local"
    if ip.is_multicast:
        return "multicast"
    if ip.version == 4 and ip in _SHARED:
        return "shared"
    if ip.version == 6 and (ip.is_site_local or ip in _NAT64_LOCAL):
        return "private"
    if ip.is_reserved:  # before is_private, which also lists 240.0.0.0/4
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:  # documentation, benchmarking and other special ranges
        return "not_global"
    return None


def check_address(ip: IPAddress | str) -> None:
    """Raise OutboundRefused (code `blocked_<reason>`) unless we may connect to `ip`."""
    if isinstance(ip, str):
        ip = ipaddress.ip_address(ip)
    if any(ip.version == net.version and ip in net for net in allowed_networks()):
        return
    if ip.version == 6 and ip.scope_id:
        ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        # On the wire this is plain IPv4: judge it as such (allow-list included).
        return check_address(ip.ipv4_mapped)
    # The IPv4 inside comes first: it names where the packet would really go.
    if ip.version == 6:
        for inner in _embedded_ipv4(ip):
            inner_reason = _block_reason(inner)
            if inner_reason:
                raise OutboundRefused(
                    f"blocked_{inner_reason}",
                    f"{ip} embeds {inner}, a {inner_reason} address",
                )
    reason = _block_reason(ip)
    if reason:
        raise OutboundRefused(f"blocked_{reason}", f"{ip} is a {reason} address")
    return None


def _is_numeric_host(host: str) -> bool:
    """A host a URL parser or inet_aton would read as IPv4 (WHATWG: last label a number)."""
    last = host.rstrip(".").rsplit(".", 1)[-1].lower()
    if last.isdigit() or (last.startswith("0x") and all(c in "0123456789abcdef" for c in last[2:])):
        return True
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return True


def literal_address(host: str) -> IPAddress | None:
    """The IP a URL's host spells, if it spells one; odd spellings are refused outright.

    `host` is the ASCII (IDNA) form, so full-width digits have already become digits.
    Decimal (2130706433), octal (0177.0.0.1), hex (0x7f.1) and short (127.1) forms mean
    127.0.0.1 to some resolvers and parsers and not to others; no legitimate endpoint needs
    them, so only the canonical dotted quad and bracketed IPv6 are accepted.
    """
    if ":" in host:
        if "%" in host:
            raise OutboundRefused("invalid_url", "IPv6 zone identifiers are not allowed")
        try:
            return ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise OutboundRefused("invalid_url", f"not an IPv6 address: {host}") from exc
    try:
        return ipaddress.IPv4Address(host)  # canonical only; Python refuses leading zeros
    except ValueError:
        pass
    if _is_numeric_host(host):
        raise OutboundRefused(
            "ip_encoding_not_canonical",
            f"{host!r} is a non-canonical IP address; write it as a dotted quad",
        )
    return None

"""Address parsing on the hot paths (bulk bans, every failure), exact and fast.

``ipaddress.ip_address(text)`` parses in Python; ``inet_pton`` does it in C, and building the
address object from an integer skips the string parser. Results equal ``ipaddress``'s, with
IPv4-mapped IPv6 (``::ffff:192.0.2.1``) turned into the IPv4 address the kernel sees.
"""

from __future__ import annotations

import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_MAPPED = b"\0" * 10 + b"\xff\xff"


def parse_address(text: str) -> IPAddress | None:
    """The address ``text`` names, or None; IPv4-mapped IPv6 becomes IPv4."""
    if ":" not in text:
        try:
            packed = socket.inet_pton(socket.AF_INET, text)
        except (OSError, ValueError):  # ValueError: an embedded NUL
            return None
        address: IPAddress = ipaddress.IPv4Address(int.from_bytes(packed, "big"))
        # inet_pton is strict dotted-quad; ipaddress agrees on every address it accepts.
        return address
    if "%" in text:  # scoped link-local: leave it to ipaddress
        try:
            parsed = ipaddress.ip_address(text)
        except ValueError:
            return None
        return parsed
    try:
        packed = socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):
        return None
    if packed[:12] == _MAPPED:
        return ipaddress.IPv4Address(int.from_bytes(packed[12:], "big"))
    return ipaddress.IPv6Address(int.from_bytes(packed, "big"))


def _canonical_host(text: str) -> str | None:
    """``str(parse_address(text))`` without building the object: inet_ntop writes the same
    RFC 5952 text as ipaddress (first longest zero run compressed, never a single zero
    group, lower case) except for the dotted IPv4 tail it gives a few IPv6 ranges, which
    take the slow path. tests/property/test_addr.py holds the two equal."""
    if ":" not in text:
        try:
            return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, text))
        except (OSError, ValueError):  # ValueError: an embedded NUL
            return None
    if "%" not in text:
        try:
            packed = socket.inet_pton(socket.AF_INET6, text)
        except (OSError, ValueError):
            return None
        if packed[:12] == _MAPPED:
            return socket.inet_ntop(socket.AF_INET, packed[12:])
        out = socket.inet_ntop(socket.AF_INET6, packed)
        if "." not in out:
            return out
    address = parse_address(text)
    return None if address is None else str(address)


def canonical_address(text: str) -> str | None:
    """The canonical text of an address or network (IPv4-mapped IPv6 as IPv4), or None."""
    if "/" not in text:
        return _canonical_host(text)
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    if net.prefixlen == net.max_prefixlen:
        return canonical_address(str(net.network_address))
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96:
        mapped = net.network_address.ipv4_mapped
        if mapped is not None:
            return str(ipaddress.IPv4Network((int(mapped), net.prefixlen - 96)))
    return str(net)


def target(text: str) -> IPAddress | IPNetwork:
    """The object for canonical text: a host stays an address, a network a network."""
    if "/" not in text:
        address = parse_address(text)
        if address is None:
            raise ValueError(f"not an IP address: {text!r}")
        return address
    net = ipaddress.ip_network(text, strict=False)
    return net.network_address if net.prefixlen == net.max_prefixlen else net


def as_network(address: IPAddress | IPNetwork) -> IPNetwork:
    """The network an address object stands for (a host is its /32 or /128), canonical:
    IPv4-mapped IPv6 becomes IPv4, because a dual-stack server logs ``::ffff:192.0.2.1`` for
    a client whose packets the kernel sees as IPv4, so the IPv6 spelling would block nothing."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        return ipaddress.IPv4Network((int(address), 32))
    if isinstance(address, ipaddress.IPv6Address):
        return ipaddress.IPv6Network((int(address), 128))
    if isinstance(address, ipaddress.IPv6Network) and address.prefixlen >= 96:
        mapped = address.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network((int(mapped), address.prefixlen - 96))
    if isinstance(address, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return address
    raise TypeError(f"not an ipaddress object: {address!r}")

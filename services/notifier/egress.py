"""Where webhooks may go: a URL whose host resolves inside (loopback, private, metadata...) is refused.

The address is resolved and checked at subscription and again at every delivery, and the request
is sent to that checked address, so a DNS answer that changes in between cannot redirect it. An
IPv6 address that carries an IPv4 address (IPv4-mapped or -compatible, 6to4, NAT64, Teredo) is
refused when that IPv4 address would be; 6to4 and Teredo, tunnels through relays that nobody
serves webhooks behind, are refused whatever they carry.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# host, port -> the addresses it resolves to; injected in tests to play DNS rebinding.
Resolver = Callable[[str, int], Awaitable[list[str]]]

# Cloud metadata services: refused even where a broad allow-list would otherwise let them through.
METADATA = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200"))

_LOW32 = 0xFFFFFFFF
_COMPATIBLE = ipaddress.ip_network("::/96")  # RFC 4291, deprecated
_SIXTOFOUR = ipaddress.ip_network("2002::/16")  # RFC 3056, deprecated by RFC 7526
_TEREDO = ipaddress.ip_network("2001::/32")  # RFC 4380
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052, the well-known prefix
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215; the operator picks the prefix length
# Where RFC 6052 puts the IPv4 address (start bit, width) for prefix lengths 96, 64, 56 and 48;
# bits 64-71 stay zero. Every place is checked, since only the operator knows its prefix length.
_NAT64_SPANS = (((96, 32),), ((72, 32),), ((56, 8), (72, 24)), ((48, 16), (72, 16)))


class ForbiddenDestination(ValueError):
    """The URL is malformed, or its host does not resolve or resolves to an address webhooks may not reach."""


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's answer, as getaddrinfo gives it."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _unmapped(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address carries, each with the name of the form that carries it."""
    if address.ipv4_mapped is not None:
        return [("IPv4-mapped", address.ipv4_mapped)]
    if address.sixtofour is not None:
        return [("6to4", address.sixtofour)]
    if address.teredo is not None:
        server, client = address.teredo  # the client's address is already un-obfuscated (XOR ffffffff)
        return [("Teredo server", server), ("Teredo client", client)]
    value = int(address)
    if address in _NAT64:
        return [("NAT64", ipaddress.IPv4Address(value & _LOW32))]
    if address in _LOCAL_NAT64:
        return [("NAT64", _bits(value, spans)) for spans in _NAT64_SPANS]
    if address in _COMPATIBLE and value > 1:  # :: and ::1 are themselves, not IPv4 addresses
        return [("IPv4-compatible", ipaddress.IPv4Address(value & _LOW32))]
    return []


def _bits(value: int, spans: tuple[tuple[int, int], ...]) -> ipaddress.IPv4Address:
    """The IPv4 address in `spans` (start bit from the left, width) of a 128-bit value."""
    out = 0
    for start, width in spans:
        out = (out << width) | (value >> (128 - start - width)) & ((1 << width) - 1)
    return ipaddress.IPv4Address(out)


def inside_kind(address: Address) -> str | None:
    """What kind of non-public address this is (e.g. "loopback"), or carries; None for a public one."""
    carried = _carried_inside(address)
    return carried[2] if carried is not None else _own_kind(_unmapped(address))


def _carried_inside(address: Address) -> tuple[str, ipaddress.IPv4Address, str] | None:
    """The first IPv4 address this one carries that is not public: (form, address, kind)."""
    if isinstance(address, ipaddress.IPv6Address):
        for form, carried in embedded_ipv4(address):
            if (kind := _own_kind(carried)) is not None:
                return form, carried, kind
    return None


def _own_kind(address: Address) -> str | None:
    checks = (
        ("metadata", address in METADATA),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("6to4", address in _SIXTOFOUR),
        ("Teredo", address in _TEREDO),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("non-global", not address.is_global),
    )
    return next((kind for kind, hit in checks if hit), None)


@dataclass(frozen=True, slots=True)
class AllowList:
    """Host names and networks webhooks may reach although they are not public."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, raw: str) -> AllowList:
        """`"127.0.0.0/8,::1,hooks.internal"`: CIDRs, addresses and exact host names."""
        hosts, networks = set(), []
        for item in filter(None, (part.strip() for part in raw.split(","))):
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                if "/" in item or not item.replace("-", "").replace(".", "").isalnum():
                    raise ValueError(f"NOTIFIER_ALLOWED_HOSTS: {item!r} is not a host, address or CIDR") from None
                hosts.add(item.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def allows(self, host: str, address: Address) -> bool:
        if host.lower().rstrip(".") in self.hosts:
            return True
        address = _unmapped(address)
        return any(address.version == net.version and address in net for net in self.networks)


@dataclass(frozen=True, slots=True)
class Destination:
    """A checked URL: send to `address`, naming `host` in the Host header and TLS."""

    url: str
    host: str
    address: str

    @property
    def pinned_url(self) -> str:
        """The URL with its host replaced by the checked address."""
        parts = urlsplit(self.url)
        literal = f"[{self.address}]" if ":" in self.address else self.address
        netloc = literal if parts.port is None else f"{literal}:{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    @property
    def host_header(self) -> str:
        return urlsplit(self.url).netloc.rpartition("@")[2]


def webhook_target(url: str) -> tuple[str, int]:
    """The host and port a webhook URL names, or ForbiddenDestination saying what is wrong with it."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ForbiddenDestination(f"is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ForbiddenDestination("must be an absolute http:// or https:// URL")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ForbiddenDestination("the port must be a number from 1 to 65535")
    try:
        httpx.URL(url)  # the webhook client is given this URL: it must parse there too
    except httpx.InvalidURL as exc:
        raise ForbiddenDestination(f"is not a valid URL: {exc}") from None
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def check_destination(url: str, *, allow: AllowList, resolve: Resolver = system_resolver) -> Destination:
    """Resolve the URL's host; every address must be public or allow-listed, else ForbiddenDestination."""
    host, port = webhook_target(url)
    try:
        answers = [ipaddress.ip_address(host)] if _is_literal(host) else [
            ipaddress.ip_address(a.split("%", 1)[0]) for a in await resolve(host, port)
        ]
    except (OSError, UnicodeError, ValueError) as exc:
        raise ForbiddenDestination(f"host {host} does not resolve: {exc}") from None
    if not answers:
        raise ForbiddenDestination(f"host {host} does not resolve")
    for address in answers:
        kind = inside_kind(address)
        if kind is not None and (kind == "metadata" and host not in allow.hosts or not allow.allows(host, address)):
            raise ForbiddenDestination(
                f"host {host} resolves to {_described(address)}, a {kind} address; "
                "list it in NOTIFIER_ALLOWED_HOSTS to allow it"
            )
    return Destination(url=url, host=host, address=str(answers[0]))


def _described(address: Address) -> str:
    carried = _carried_inside(address)
    return f"{address} ({carried[0]} {carried[1]})" if carried is not None else str(address)


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True

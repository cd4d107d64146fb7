"""Where webhooks may go: a URL whose host resolves inside (loopback, private, metadata...) is refused.

The address is resolved and checked at subscription and again at every delivery, and the request
is sent to that checked address, so a DNS answer that changes in between cannot redirect it.
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


def inside_kind(address: Address) -> str | None:
    """What kind of non-public address this is (e.g. "loopback"); None for a public one."""
    address = _unmapped(address)
    checks = (
        ("metadata", address in METADATA),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
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
    def parse(cls, raw: str) -> "AllowList":
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
                f"host {host} resolves to {address}, a {kind} address; list it in NOTIFIER_ALLOWED_HOSTS to allow it"
            )
    return Destination(url=url, host=host, address=str(answers[0]))


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True

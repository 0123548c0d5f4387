"""The SSRF guard: which URLs a webhook may name, and which addresses a delivery may reach.

A webhook URL is checked twice. At registration (:func:`check_url` then :func:`check_host`)
the caller hears at once that ``https://10.0.0.5/hook`` will never be called. At delivery the
sender resolves the host again and connects only to addresses this module allows (see
:mod:`rlm.webhooks.sender`), so a name that resolved to a public address at registration and
to ``169.254.169.254`` later (DNS rebinding) is still refused.

Only public (globally routable) unicast addresses are allowed. Loopback is allowed as well when
the operator says so (``RLM_WEBHOOKS__ALLOW_LOOPBACK``, for development and tests); private,
link-local, cloud-metadata, multicast, unspecified and reserved addresses never are. IPv6
forms that embed an IPv4 address (``::ffff:10.0.0.1``, NAT64 ``64:ff9b::/96``, 6to4) are
judged by the IPv4 address inside. Redirects are never followed (the sender's business).

Example:
    >>> classify("169.254.169.254")
    'metadata'
    >>> classify("::ffff:127.0.0.1")
    'loopback'
    >>> AddressPolicy(allow_loopback=True).allows("127.0.0.1")
    True
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import urlsplit

from rlm.errors import InvalidInput

__all__ = [
    "AddressClass",
    "AddressPolicy",
    "BlockedAddress",
    "METADATA_ADDRESSES",
    "Resolver",
    "SystemResolver",
    "Target",
    "check_host",
    "check_url",
    "classify",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: What an address is, for the guard's purposes.
AddressClass = Literal[
    "public",
    "loopback",
    "private",
    "link_local",
    "metadata",
    "multicast",
    "unspecified",
    "reserved",
]

#: Cloud instance-metadata endpoints (AWS, ECS, GCP, Azure, Oracle, Alibaba), refused even
#: where an operator allows loopback.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.170.23",
        "192.0.0.192",
        "100.100.100.200",
        "fd00:ec2::254",
        "fd00:ec2::23",
    )
)

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_MAX_URL = 2048
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def classify(address: str | IPAddress) -> AddressClass:
    """Say what kind of address ``address`` is.

    Args:
        address: An IPv4 or IPv6 address (text or ``ipaddress`` object).

    Returns:
        ``public`` only for a globally routable unicast address that is not a metadata
        endpoint.

    Raises:
        ValueError: ``address`` is not an IP address.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id is not None:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        inner = _embedded_v4(ip)
        if inner is not None:
            return classify(inner)
    if ip in METADATA_ADDRESSES:
        return "metadata"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link_local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "reserved"
    return "public"


class BlockedAddress(InvalidInput):
    """A webhook URL names (or its host resolves to) an address the guard refuses (400).

    ``details``: ``field`` (``url``), ``host``, ``address`` and ``addressClass``.
    """


class Resolver(Protocol):
    """Turns a host name into IP addresses (a seam: tests resolve names as they please)."""

    def resolve(self, host: str, port: int) -> list[str]:
        """Every address ``host`` resolves to, as text.

        Raises:
            OSError: The name does not resolve.
        """
        ...


class SystemResolver:
    """The system's resolver (``getaddrinfo``); blocking, so callers run it off the loop."""

    def resolve(self, host: str, port: int) -> list[str]:
        """See :meth:`Resolver.resolve`."""
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        seen: dict[str, None] = {}
        for *_, sockaddr in infos:
            seen.setdefault(str(sockaddr[0]), None)
        return list(seen)


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which schemes and addresses webhooks may use (from :class:`WebhookSettings`).

    Attributes:
        allow_http: Plain ``http`` URLs are accepted.
        allow_loopback: Loopback addresses are accepted.
    """

    allow_http: bool = False
    allow_loopback: bool = False

    @property
    def schemes(self) -> frozenset[str]:
        """The URL schemes accepted."""
        return frozenset({"https", "http"}) if self.allow_http else frozenset({"https"})

    def allows(self, address: str | IPAddress) -> bool:
        """Whether a delivery may connect to ``address``."""
        kind = classify(address)
        return kind == "public" or (kind == "loopback" and self.allow_loopback)

    def check(self, host: str, address: str) -> None:
        """Refuse ``address`` (which ``host`` names or resolves to) unless it is allowed.

        Raises:
            BlockedAddress: naming the address and its class.
        """
        if self.allows(address):
            return
        kind = classify(address)
        hint = " (loopback needs RLM_WEBHOOKS__ALLOW_LOOPBACK)" if kind == "loopback" else ""
        raise BlockedAddress(
            f"url: {host} resolves to {address}, a {kind.replace('_', '-')} address that "
            f"webhooks may not call{hint}",
            {"host": host, "address": address, "addressClass": kind},
            field="url",
        )


@dataclass(frozen=True, slots=True)
class Target:
    """A checked webhook URL.

    Attributes:
        url: The URL as given.
        scheme: ``https`` (or ``http`` where allowed).
        host: The host name, lower case; an IPv6 literal without brackets.
        port: The port (the scheme's default when the URL names none).
        literal: The host as an IP address, when it is one.
    """

    url: str
    scheme: str
    host: str
    port: int
    literal: IPAddress | None


def _refuse(message: str) -> InvalidInput:
    return InvalidInput(f"url: {message}", field="url")


def check_url(url: str, policy: AddressPolicy) -> Target:
    """Parse a webhook URL and check its form (and its address, when it is an IP literal).

    Host names are not resolved here; see :func:`check_host`.

    Raises:
        InvalidInput: ``field`` = ``url``; :class:`BlockedAddress` for a refused literal.
    """
    if len(url) > _MAX_URL:
        raise _refuse(f"longer than {_MAX_URL} characters")
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        raise _refuse("must be ASCII without spaces (use the punycode form of a name)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise _refuse(f"not a valid URL ({err})") from None
    scheme = parts.scheme.lower()
    if scheme not in policy.schemes:
        allowed = " or ".join(sorted(policy.schemes))
        raise _refuse(f"the scheme must be {allowed}, not {scheme or 'missing'!r}")
    if "@" in parts.netloc:
        raise _refuse("credentials in the URL are not accepted")
    if parts.fragment:
        raise _refuse("a fragment (#...) is not accepted")
    host = (parts.hostname or "").lower()
    if not host:
        raise _refuse("the host is missing")
    literal: IPAddress | None
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
        if not set(host) <= _HOST_CHARS or ".." in host or host.startswith(("-", ".")):
            raise _refuse(f"{host!r} is not a valid host name") from None
    if literal is not None:
        policy.check(host, str(literal))
    return Target(url, scheme, host, port or (443 if scheme == "https" else 80), literal)


def check_host(target: Target, policy: AddressPolicy, resolver: Resolver) -> list[str]:
    """Resolve the target's host and check every address it resolves to.

    Returns:
        The addresses (all allowed).

    Raises:
        InvalidInput: The name does not resolve (``field`` = ``url``).
        BlockedAddress: One of its addresses is refused (one is enough: a name that mixes
            public and private addresses is refused as a whole).
    """
    if target.literal is not None:
        return [str(target.literal)]
    try:
        addresses = resolver.resolve(target.host, target.port)
    except OSError as err:
        raise _refuse(f"{target.host} does not resolve ({err})") from None
    if not addresses:
        raise _refuse(f"{target.host} does not resolve")
    for address in addresses:
        policy.check(target.host, address)
    return addresses

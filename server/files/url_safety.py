"""Which media URLs may be fetched: http(s) to public hosts only.

A media URL comes out of a job's result, which a prompt or an upstream can steer, so it is treated as hostile.
`refusal` looks at the URL alone: IP literals in any form the resolver accepts, and names that are local by
definition, are refused without a lookup. `checked_addresses` then resolves a name once and checks every address
it gets; the caller connects to one of those very addresses (never resolving again), so a public-looking name
that resolves, or rebinds between two lookups, to a private address is refused too.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable

import anyio
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses it resolves to (as text). Injectable, so a test can map a name to 127.0.0.1 alone.
Resolver = Callable[[str, int], Awaitable[list[str]]]

# Names that only resolve inside a network (RFC 6762 .local, ICANN's .internal, RFC 8375 home.arpa), where
# metadata.google.internal lives. Single-label names (no dot) resolve only through local search domains.
_LOCAL_SUFFIXES = (".local", ".internal", ".home.arpa")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def refusal(url: httpx.URL, *, allow_loopback: bool) -> str | None:
    """Why `url` may not be fetched, or None, from the URL alone (no lookup): IP literals (in any form the
    resolver would accept) and names that are local by definition are refused. A name that passes must still
    pass `checked_addresses`."""
    scheme = url.scheme
    if scheme not in ("http", "https"):
        shown = re.sub(r"[^a-z0-9+.-]", "", scheme.lower())[:20]
        return f"it is a {shown}: URL, not http(s)" if shown else "it is not an absolute http(s) URL"
    if url.userinfo:
        # httpx would turn user:password@ into an Authorization header.
        return "it carries a user name or password"
    host = url.host.rstrip(".").lower()
    if not host:
        return "it has no host"
    address = _ip_literal(host)
    if address is None:
        if host == "localhost" or host.endswith(".localhost"):
            return None if allow_loopback else "its host is this computer (localhost)"
        if "." not in host or host.endswith(_LOCAL_SUFFIXES):
            return "its host is a local-network name"
        return None
    return _address_refusal(address, allow_loopback=allow_loopback)


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # The resolver also takes legacy IPv4 forms (2130706433, 0x7f.1, 017700000001, 127.1) as addresses.
    if re.fullmatch(r"[0-9a-fx.]+", host) and any(c.isdigit() for c in host):
        with contextlib.suppress(OSError):
            return ipaddress.IPv4Address(socket.inet_aton(host))
    return None


def _address_refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_loopback: bool) -> str | None:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d is that IPv4 host
            return _address_refusal(address.ipv4_mapped, allow_loopback=allow_loopback)
        teredo = address.teredo[1] if address.teredo else None
        nat64 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None
        for embedded in (address.sixtofour, teredo, nat64):  # tunnels that reach an embedded IPv4 host
            if embedded is not None and (reason := _address_refusal(embedded, allow_loopback=False)):
                return reason
    if address.is_loopback:
        return None if allow_loopback else "its host is a loopback address (this computer)"
    if address.is_unspecified:
        return "its host is an unspecified address"
    if address.is_link_local:
        return "its host is a link-local address (where cloud metadata services answer)"
    if address.is_multicast:
        return "its host is a multicast address"
    if address.is_reserved:
        return "its host is a reserved address"
    if address.is_private:
        return "its host is a private-network address"
    if not address.is_global:
        return "its host is a non-public address"
    return None


class AddressRefused(Exception):
    """The URL's host cannot be fetched; the message says why (never quoting an address)."""


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for `host`, in its order of preference."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def checked_addresses(url: httpx.URL, *, allow_loopback: bool, resolve: Resolver) -> list[IPAddress]:
    """Resolve the URL's host once and check every address it resolves to; the checked addresses, in order.

    One refused address refuses the host (a name with one public and one private address is a rebinding
    attempt, or a misconfiguration). Raises AddressRefused.
    """
    host = url.raw_host.decode("ascii")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        answers = [host] if _is_ip(host) else await resolve(host, port)  # an address needs no lookup
    except OSError:  # socket.gaierror included: no such name, or no resolver
        raise AddressRefused("its host name could not be resolved") from None
    addresses: list[IPAddress] = []
    for text in answers:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 scope ("%eth0") is not part of it
        except ValueError:
            raise AddressRefused("its host name resolved to something that is not an address") from None
        reason = _address_refusal(address, allow_loopback=allow_loopback)
        if reason is not None:
            raise AddressRefused(reason.replace("its host is", "its host name resolves to", 1))
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise AddressRefused("its host name resolved to no address")
    return addresses


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True

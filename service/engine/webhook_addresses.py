"""Where a webhook may go: public addresses only, checked on the address connected to.

A webhook URL is the tenant's choice, so without a check it could reach the
service's own network: loopback, private ranges, the cloud metadata address.
Checking the host name is not enough, and neither is resolving it once before
the request: a second DNS answer could differ (rebinding). So the check runs in
the resolver of the webhooks' aiohttp connector, whose answers are the very
addresses aiohttp connects to, with its DNS cache off; an IP literal, which
aiohttp never resolves, is checked before the request.
"""

from __future__ import annotations

import ipaddress
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Shared address space (carrier-grade NAT), RFC 6598: neither private nor global to ipaddress.
_SHARED = ipaddress.ip_network("100.64.0.0/10")


class AddressRefused(Exception):
    """The webhook's host is, or resolves to, an address it may not reach."""

    def __init__(self, host: str, address: str, problem: str) -> None:
        shown = address if address == host else f"{host} resolves to {address}, which"
        super().__init__(f"address_refused: {shown} is {problem}")


def address_problem(address: IpAddress) -> str | None:
    """Why a webhook may not connect to this address; None for a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is not None:
            problem = address_problem(embedded)
            return f"an IPv6 address embedding {embedded}, {problem}" if problem else None
    checks = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_private, "a private address"),
        (address.version == 4 and address in _SHARED, "a shared (carrier-grade NAT) address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a public address"),
    )
    for applies, kind in checks:
        if applies:
            return kind
    return None


def check_literal(host: str) -> None:
    """Refuses a host that is a non-public IP literal; a name is the resolver's to check."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return
    if problem := address_problem(address):
        raise AddressRefused(host, host, problem)


class PublicAddressResolver(AbstractResolver):
    """Resolves as aiohttp does by default, then refuses the host if any of its
    addresses is not public: an attacker's name could list a private one beside a
    public one and let the connector pick."""

    def __init__(self) -> None:
        self._resolver = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        resolved = await self._resolver.resolve(host, port, family)
        for result in resolved:
            address = ipaddress.ip_address(result["host"].split("%", 1)[0])
            if problem := address_problem(address):
                raise AddressRefused(host, result["host"], problem)
        return resolved

    async def close(self) -> None:
        await self._resolver.close()

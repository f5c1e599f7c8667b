"""Which addresses a webhook may reach: public ones only, in every spelling of the others."""

from __future__ import annotations

import ipaddress

import pytest

from service.engine.webhook_addresses import (
    AddressRefused,
    PublicAddressResolver,
    address_problem,
    check_literal,
)

REFUSED = {
    "127.0.0.1": "loopback",
    "127.255.255.254": "loopback",
    "::1": "loopback",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "172.31.255.255": "private",
    "192.168.1.1": "private",
    "169.254.169.254": "link-local",  # cloud metadata
    "fe80::1": "link-local",
    "fc00::1": "private",
    "fd12:3456::1": "private",
    "100.64.0.1": "carrier-grade NAT",
    "100.127.255.255": "carrier-grade NAT",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "ff02::1": "multicast",
    "240.0.0.1": "",  # reserved (Python counts it private)
    "255.255.255.255": "",
    "192.0.2.1": "",  # documentation
    "198.18.0.1": "",  # benchmarking
    "::ffff:127.0.0.1": "embedding 127.0.0.1",
    "::ffff:169.254.169.254": "embedding 169.254.169.254",
    "::ffff:10.0.0.1": "embedding 10.0.0.1",
    "2002:7f00:1::": "embedding 127.0.0.1",  # 6to4
    "2001:db8::1": "",  # documentation
}
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.215.14", "100.63.255.255", "100.128.0.0", "2606:4700::1111"]


@pytest.mark.parametrize(("address", "named"), REFUSED.items())
def test_non_public_addresses_are_refused(address: str, named: str) -> None:
    problem = address_problem(ipaddress.ip_address(address))
    assert problem is not None
    assert named in problem


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None
    check_literal(address)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "::ffff:127.0.0.1", "fe80::1%eth0"])
def test_a_non_public_ip_literal_is_refused_before_any_connection(host: str) -> None:
    with pytest.raises(AddressRefused, match="address_refused"):
        check_literal(host)


def test_a_host_name_is_left_to_the_resolver() -> None:
    check_literal("localhost")


@pytest.mark.parametrize("host", ["localhost", "127.1", "2130706433", "0x7f000001"])
async def test_the_resolver_refuses_names_and_spellings_that_resolve_to_loopback(
    host: str,
) -> None:
    resolver = PublicAddressResolver()
    try:
        with pytest.raises(AddressRefused, match="loopback"):
            await resolver.resolve(host, 80)
    finally:
        await resolver.close()

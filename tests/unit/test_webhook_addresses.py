"""The SSRF guard: address classes (tables and properties) and the URL checks."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlm.errors import InvalidInput
from rlm.webhooks.addresses import (
    METADATA_ADDRESSES,
    AddressPolicy,
    BlockedAddress,
    check_host,
    check_url,
    classify,
)

STRICT = AddressPolicy()
DEV = AddressPolicy(allow_http=True, allow_loopback=True)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("93.184.216.34", "public"),
        ("8.8.8.8", "public"),
        ("2606:4700:4700::1111", "public"),
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.1.1", "link_local"),
        ("fe80::1", "link_local"),
        ("fe80::1%eth0", "link_local"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("100.64.0.1", "reserved"),  # carrier-grade NAT: shared, not global
        ("::ffff:10.1.2.3", "private"),  # IPv4-mapped
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "metadata"),
        ("64:ff9b::a9fe:a9fe", "metadata"),  # NAT64 of 169.254.169.254
        ("64:ff9b::808:808", "public"),  # NAT64 of 8.8.8.8
        ("2002:0a00:0001::1", "private"),  # 6to4 of 10.0.0.1
    ],
)
def test_address_classes(address: str, kind: str) -> None:
    assert classify(address) == kind


@given(st.ip_addresses(v=4))
def test_an_ipv4_address_is_public_exactly_when_it_is_global_unicast(
    ip: ipaddress.IPv4Address,
) -> None:
    public = ip.is_global and not ip.is_multicast and ip not in METADATA_ADDRESSES
    assert (classify(ip) == "public") == public
    assert STRICT.allows(ip) == public


@given(st.ip_addresses(v=4))
def test_an_ipv4_mapped_address_is_judged_by_its_ipv4_address(ip: ipaddress.IPv4Address) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
    assert classify(mapped) == classify(ip)
    nat64 = ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(ip))
    assert classify(nat64) == classify(ip)


@given(st.ip_addresses())
def test_loopback_is_the_only_class_the_operator_setting_opens(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    kind = classify(ip)
    assert DEV.allows(ip) == (kind in ("public", "loopback"))
    assert STRICT.allows(ip) == (kind == "public")
    if not DEV.allows(ip):
        with pytest.raises(BlockedAddress) as raised:
            DEV.check("h", str(ip))
        assert raised.value.details["addressClass"] == kind
        assert raised.value.details["field"] == "url"


def test_metadata_stays_refused_when_loopback_is_allowed() -> None:
    for address in METADATA_ADDRESSES:
        assert not DEV.allows(address)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://example.com/hook", "scheme must be https"),
        ("ftp://example.com/hook", "scheme must be https"),
        ("example.com/hook", "scheme must be https"),
        ("https://user:pw@example.com/hook", "credentials"),
        ("https://example.com/hook#frag", "fragment"),
        ("https:///hook", "host is missing"),
        ("https://exa mple.com/", "ASCII without spaces"),
        ("https://exämple.com/", "ASCII without spaces"),
        ("https://example.com:99999/", "not a valid URL"),
        ("https://ex_ample.com/", "not a valid host name"),
        ("https://" + "a" * 2050 + ".com/", "longer than 2048"),
        ("https://10.0.0.5/hook", "private"),
        ("https://[::1]/hook", "loopback"),
        ("https://169.254.169.254/latest/meta-data", "metadata"),
        ("https://0.0.0.0/", "unspecified"),
    ],
)
def test_refused_urls_name_the_url_field(url: str, why: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        check_url(url, STRICT)
    assert raised.value.details["field"] == "url"
    assert why in raised.value.message


def test_accepted_urls_and_their_parts() -> None:
    target = check_url("https://Example.com/hooks?x=1", STRICT)
    assert (target.scheme, target.host, target.port, target.literal) == (
        "https",
        "example.com",
        443,
        None,
    )
    local = check_url("http://127.0.0.1:8080/hook", DEV)
    assert (local.port, str(local.literal)) == (8080, "127.0.0.1")
    assert check_url("http://[::1]:9/x", DEV).host == "::1"
    with pytest.raises(BlockedAddress):
        check_url("https://127.0.0.1/", AddressPolicy(allow_http=True))  # http alone: no loopback


class _Names:
    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[tuple[str, int]] = []

    def resolve(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        if host not in self.table:
            raise OSError(f"unknown host {host}")
        return self.table[host]


def test_host_names_are_resolved_and_every_address_checked() -> None:
    names = _Names(
        {
            "public.test": ["93.184.216.34"],
            "inside.test": ["10.0.0.7"],
            "mixed.test": ["93.184.216.34", "192.168.0.2"],
            "empty.test": [],
        }
    )
    assert check_host(check_url("https://public.test/h", STRICT), STRICT, names) == [
        "93.184.216.34"
    ]
    assert names.asked == [("public.test", 443)]
    for host, kind in (("inside.test", "private"), ("mixed.test", "private")):
        with pytest.raises(BlockedAddress) as raised:
            check_host(check_url(f"https://{host}/h", STRICT), STRICT, names)
        assert raised.value.details["addressClass"] == kind
        assert raised.value.details["host"] == host
    for host in ("nowhere.test", "empty.test"):
        with pytest.raises(InvalidInput, match="does not resolve"):
            check_host(check_url(f"https://{host}/h", STRICT), STRICT, names)
    # A literal needs no resolution.
    names.asked.clear()
    assert check_host(check_url("https://93.184.216.34/h", STRICT), STRICT, names) == [
        "93.184.216.34"
    ]
    assert names.asked == []

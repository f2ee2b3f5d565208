"""The client address behind trusted proxies: walk the chain from the right, never trust an untrusted peer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.client_address import client_address, parse_address, parse_networks

TRUSTED = parse_networks("10.0.0.0/8, 127.0.0.1, fd00::/8", setting="test")


def xff(value: str) -> list[tuple[bytes, bytes]]:
    return [(b"x-forwarded-for", value.encode())]


def forwarded(value: str) -> list[tuple[bytes, bytes]]:
    return [(b"forwarded", value.encode())]


def test_no_trusted_proxies_means_the_peer_is_the_client() -> None:
    assert client_address("198.51.100.9", xff("203.0.113.1"), (), "x-forwarded-for") == "198.51.100.9"


def test_spoofed_header_from_an_untrusted_peer_is_ignored() -> None:
    assert client_address("198.51.100.9", xff("203.0.113.1"), TRUSTED, "x-forwarded-for") == "198.51.100.9"
    assert client_address("198.51.100.9", forwarded("for=203.0.113.1"), TRUSTED, "forwarded") == "198.51.100.9"


def test_the_first_untrusted_hop_from_the_right_is_the_client() -> None:
    # the client forged "6.6.6.6, 10.9.9.9"; our proxies appended the real client and one inner hop
    chain = "6.6.6.6, 10.9.9.9, 203.0.113.7, 10.0.0.2"
    assert client_address("10.0.0.1", xff(chain), TRUSTED, "x-forwarded-for") == "203.0.113.7"


def test_a_chain_of_only_trusted_hops_names_the_leftmost() -> None:
    assert client_address("127.0.0.1", xff("10.1.1.1, 10.2.2.2"), TRUSTED, "x-forwarded-for") == "10.1.1.1"


def test_repeated_headers_are_one_chain() -> None:
    headers = [(b"x-forwarded-for", b"6.6.6.6"), (b"X-Forwarded-For", b"203.0.113.7")]
    assert client_address("10.0.0.1", headers, TRUSTED, "x-forwarded-for") == "203.0.113.7"


def test_only_the_configured_header_counts() -> None:
    # our proxy writes Forwarded; an X-Forwarded-For it passes through is the client's own invention
    headers = [*xff("6.6.6.6"), *forwarded("for=203.0.113.7")]
    assert client_address("10.0.0.1", headers, TRUSTED, "forwarded") == "203.0.113.7"
    assert client_address("10.0.0.1", forwarded("for=203.0.113.7"), TRUSTED, "x-forwarded-for") == "10.0.0.1"


@pytest.mark.parametrize(
    ("value", "client"),
    [
        ('for="[2001:db8:cafe::17]:4711"', "2001:db8:cafe::17"),
        ("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
        ('For="[2001:db8::1]", for=10.0.0.5', "2001:db8::1"),
        ("for=198.51.100.17:8080", "198.51.100.17"),
        ("for=unknown", "10.0.0.1"),  # the proxy does not know: the last trusted hop stands
        ("for=_hidden, for=10.0.0.5", "10.0.0.5"),
    ],
)
def test_forwarded_elements(value: str, client: str) -> None:
    assert client_address("10.0.0.1", forwarded(value), TRUSTED, "forwarded") == client


def test_ipv6_and_mapped_addresses() -> None:
    assert client_address("fd00::1", xff("2001:db8::5"), TRUSTED, "x-forwarded-for") == "2001:db8::5"
    assert client_address("::ffff:10.0.0.1", xff("203.0.113.7"), TRUSTED, "x-forwarded-for") == "203.0.113.7"
    assert client_address("10.0.0.1", xff("::ffff:203.0.113.7"), TRUSTED, "x-forwarded-for") == "203.0.113.7"


def test_garbage_stops_the_walk_at_the_last_trusted_hop() -> None:
    assert client_address("10.0.0.1", xff("203.0.113.7, not-an-ip"), TRUSTED, "x-forwarded-for") == "10.0.0.1"


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="PAYRECON_TRUSTED_PROXIES: 'nope'"):
        parse_networks("10.0.0.0/8, nope", setting="PAYRECON_TRUSTED_PROXIES")
    assert parse_address("[::1]:80") is not None
    assert parse_address("nope") is None


untrusted_ipv4 = st.ip_addresses(v=4).filter(lambda a: not a.is_private and not a.is_loopback).map(str)
trusted_hop = st.integers(1, 2**24 - 2).map(lambda n: f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}")
anything = st.text(alphabet="0123456789abcdef.:[]_ ", max_size=20)


@given(attacker=st.lists(anything | untrusted_ipv4, max_size=5), client=untrusted_ipv4, hops=st.lists(trusted_hop))
def test_whatever_the_client_prepends_it_cannot_choose_its_address(
    attacker: list[str], client: str, hops: list[str]
) -> None:
    # The client sends any X-Forwarded-For it likes; each trusted proxy appends its peer; the last one connects.
    chain = [*attacker, client, *hops]
    assert client_address("10.0.0.1", xff(", ".join(chain)), TRUSTED, "x-forwarded-for") == client

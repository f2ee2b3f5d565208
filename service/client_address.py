"""The client's address behind reverse proxies we trust (PAYRECON_TRUSTED_PROXIES).

Behind nginx or a cloud load balancer the TCP peer is the proxy. The proxy names the client in
a header — `X-Forwarded-For: client, proxy1, proxy2` or RFC 7239 `Forwarded: for=client, for=…`
— which it *appends* to whatever the client sent. So only the right-hand end of the chain is
written by machines we trust: walk it from the right, skip every hop inside a trusted network,
and the first address that is not trusted is the client (uvicorn's proxy-headers middleware and
RFC 7239 §7.4 reason the same way). The header is read only when the direct peer itself is
trusted: anyone else can send any header they like.

One header is read, the one named by PAYRECON_PROXY_HEADER: a proxy that writes `Forwarded`
passes a client's own `X-Forwarded-For` through untouched, and reading that one would let the
client choose its address.

`ClientAddressMiddleware` rewrites the ASGI scope's `client` in place, so the allowlists, the
rejection records, our logs and uvicorn's access log all see the client, not the proxy; the
peer is kept in scope["payrecon.peer"].
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from litestar.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
ProxyHeader = Literal["x-forwarded-for", "forwarded"]

MAX_HOPS = 32  # a longer chain is not from a sane proxy setup; we do not walk past it


def parse_networks(text: str | Iterable[str], *, setting: str) -> tuple[Network, ...]:
    """Networks from "10.0.0.0/8, ::1" (or a list); a bare address is a /32 or /128. ValueError names `setting`."""
    items = text.split(",") if isinstance(text, str) else list(text)
    networks: list[Network] = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{setting}: {item!r} is not an IP address or CIDR range") from None
    return tuple(networks)


def parse_address(text: str) -> Address | None:
    """An address as a proxy header or a socket writes it (IPv6 maybe bracketed, maybe with a port)."""
    text = text.strip().strip('"')
    if text.startswith("["):  # "[2001:db8::1]:4711" or "[2001:db8::1]"
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # "192.0.2.1:4711"
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text.split("%")[0])  # drop an IPv6 zone id
    except ValueError:
        return None


def within(address: Address, networks: Sequence[Network]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.1 on a dual-stack socket is 10.0.0.1
    return any(address.version == net.version and address in net for net in networks)


def forwarded_chain(value: str, header: ProxyHeader) -> list[str]:
    """The hop addresses of a proxy header, client first, as written (not yet parsed)."""
    if header == "x-forwarded-for":
        return [hop.strip() for hop in value.split(",")]
    hops = []
    for element in value.split(","):  # RFC 7239: elements by comma, pairs by semicolon
        found = ""
        for pair in element.split(";"):
            name, _, token = pair.strip().partition("=")
            if name.lower() == "for":
                found = token
        hops.append(found)  # an element without for= is a hop we cannot name
    return hops


def client_address(
    peer: str | None, headers: Iterable[tuple[bytes, bytes]], trusted: Sequence[Network], header: ProxyHeader
) -> str | None:
    """The client's address: the peer's unless the peer is a trusted proxy that forwarded the request."""
    if not trusted or peer is None:
        return peer
    peer_address = parse_address(peer)
    if peer_address is None or not within(peer_address, trusted):
        return peer  # spoofed headers from an untrusted peer are ignored
    name = header.encode()
    values = [v.decode("latin-1") for k, v in headers if k.lower() == name]
    if not values:
        return peer
    hops = forwarded_chain(", ".join(values), header)
    client = peer
    for hop in reversed(hops[-MAX_HOPS:]):
        address = parse_address(hop)
        if address is None:
            # "unknown", an obfuscated "_id" or garbage: the chain cannot be followed further, and
            # what is left of it was written by someone we cannot vouch for. The last trusted hop stands.
            return client
        client = str(address.ipv4_mapped or address) if isinstance(address, ipaddress.IPv6Address) else str(address)
        if not within(address, trusted):
            return client
    return client  # every hop is trusted: the leftmost is the client (it is one of ours)


class ClientAddressMiddleware:
    """Pure ASGI middleware: scope["client"] becomes the client behind trusted proxies."""

    def __init__(self, app: ASGIApp, trusted: Sequence[Network], header: ProxyHeader) -> None:
        self.app, self.trusted, self.header = app, tuple(trusted), header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.trusted and scope["type"] in ("http", "websocket"):
            peer = scope.get("client")
            host = peer[0] if peer else None
            found = client_address(host, scope.get("headers", ()), self.trusted, self.header)
            if found is not None and found != host:
                scope_dict: dict[str, Any] = scope  # type: ignore[assignment]
                scope_dict["payrecon.peer"] = peer
                scope_dict["client"] = (found, 0)  # in place: uvicorn's access log reads this same dict
        await self.app(scope, receive, send)

"""The client source address: the TCP peer, or the forwarded client when the peer is a trusted proxy.

The forwarded header (``X-Forwarded-For``, or RFC 7239 ``Forwarded`` when ``server.forwarded_header`` says
so: only the one the proxies write is read, since a client can send the other unchecked) is believed only
when the TCP peer lies in ``server.trusted_proxies``. Each proxy appends the address it saw, so the header
is read from the right: the first entry that is not itself a trusted proxy is the client (everything left
of it may be forged by that client). The header's length and hop count are bounded, malformed entries
(and RFC 7239's ``unknown`` and obfuscated ``_names``) are skipped, and whenever no usable address is found
the peer is the source.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

__all__ = ["MAX_FORWARDED_BYTES", "MAX_FORWARDED_HOPS", "SourceResolver", "forwarded_client", "source_resolver"]

MAX_FORWARDED_BYTES = 2048  # all X-Forwarded-For headers together; longer: ignored (the peer is the source)
MAX_FORWARDED_HOPS = 16  # right-most entries looked at

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
SourceResolver = Callable[[MutableMapping[str, Any]], str]


def _address(text: str) -> Address | None:
    """An address from one header entry (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``::1``), or None."""
    text = text.strip()
    if not text or len(text) > 64:
        return None
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def _for_parameter(element: str) -> str:
    """The node of an RFC 7239 element's ``for=`` parameter (``for="[2001:db8::1]:4711";proto=https``), or
    ``""`` when it has none (then it is skipped as malformed, as ``unknown`` and ``_obfuscated`` nodes are)."""
    for pair in element.split(";"):
        name, _, value = pair.partition("=")
        if name.strip().lower() == "for":
            return value.strip().strip('"')
    return ""


class _Forwarded:
    """The X-Forwarded-For reading for one set of trusted networks, with a bounded cache of parsed entries."""

    def __init__(self, networks: tuple[Network, ...], *, rfc7239: bool = False) -> None:
        self.networks = networks
        self.rfc7239 = rfc7239
        # Parsing costs ~10 µs an entry; the cache is bounded, so made-up entries cannot grow memory.
        self.classify = functools.lru_cache(maxsize=8192)(self._classify)

    def _classify(self, text: str) -> tuple[str | None, bool]:
        """(the normalised address or None when malformed, whether it lies in a trusted network)."""
        address = _address(text)
        if address is None:
            return None, False
        return str(address), any(address.version == net.version and address in net for net in self.networks)

    def client(self, peer: str, forwarded: Iterable[bytes]) -> str:
        if not self.classify(peer)[1]:
            return peer
        values = list(forwarded)
        if not values or sum(len(v) + 1 for v in values) > MAX_FORWARDED_BYTES:
            return peer
        entries = b",".join(values).decode("latin-1").split(",")
        if self.rfc7239:
            entries = [_for_parameter(element) for element in entries]
        for entry in reversed(entries[-MAX_FORWARDED_HOPS:]):
            address, trusted = self.classify(entry.strip())
            if address is not None and not trusted:
                return address
        return peer


def forwarded_client(
    peer: str, forwarded: Iterable[bytes], networks: tuple[Network, ...], *, header: str = "x-forwarded-for"
) -> str:
    """The source for a request from ``peer`` carrying the values ``forwarded`` of ``header``."""
    return _Forwarded(networks, rfc7239=header == "forwarded").client(peer, forwarded)


def source_resolver(cidrs: Iterable[str], *, header: str = "x-forwarded-for") -> SourceResolver:
    """A function from an ASGI scope to its source address; without trusted proxies, the peer alone.
    ``header`` is the forwarded header the trusted proxies write: ``x-forwarded-for`` or ``forwarded``."""
    networks = tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)
    name = header.lower().encode()

    def peer_only(scope: MutableMapping[str, Any]) -> str:
        client = scope.get("client")
        return str(client[0]) if client else "-"

    if not networks:
        return peer_only

    reader = _Forwarded(networks, rfc7239=name == b"forwarded")

    def resolve(scope: MutableMapping[str, Any]) -> str:
        peer = peer_only(scope)
        forwarded = [v for k, v in scope.get("headers", ()) if k.lower() == name]
        return reader.client(peer, forwarded)

    return resolve

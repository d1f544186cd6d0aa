"""Who sent a request: the client address, through trusted proxies, and allowlists.

Behind a load balancer every connection comes from the balancer; the client's address
is in ``X-Forwarded-For``, which anyone can also write. So the header is believed only
from a peer in ``server.trusted_proxies``, and then read from the right: each proxy
appends the address it received from, so the rightmost address that is not itself a
trusted proxy is the first hop nobody trusted vouches for — the client. Addresses to
the left of it were written by the client and prove nothing.

Decisions are remembered per address (a bounded cache), so a request costs a
dictionary look-up, not a parse and a walk over every range.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from aiohttp import web

#: Entries a decision cache keeps before it starts afresh (a flood of new addresses
#: must not grow memory without bound).
CACHE_SIZE = 4096
#: What a client address is when the peer's is unknown (a UNIX socket).
UNKNOWN = "unknown"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressSet:
    """Membership of addresses (as text) in a set of networks, remembered per address."""

    __slots__ = ("_cache", "_networks")

    def __init__(self, networks: Iterable[str]) -> None:
        self._networks: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in networks)
        self._cache: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str):
            return False
        found = self._cache.get(address)
        if found is None:
            found = self._lookup(address)
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[address] = found
        return found

    def _lookup(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            return False  # not an address: in no range
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:192.0.2.1 from a dual-stack socket is 192.0.2.1
        return any(ip in network for network in self._networks)


def forwarded_client(peer: str, forwarded: Iterable[str], trusted: AddressSet) -> str:
    """The client address of a request from ``peer`` with ``X-Forwarded-For`` values.

    Walks the forwarded addresses right to left past every trusted proxy; the first one
    that is not trusted is the client. A value that is not an address ends the walk as
    the client too (it cannot be trusted, and an allowlist refuses it).
    """
    if peer not in trusted:
        return peer
    client = peer
    hops = [hop.strip() for value in forwarded for hop in value.split(",")]
    for hop in reversed(hops):
        if not hop:
            continue
        client = hop
        if hop not in trusted:
            break
    return client


def client_address(trusted: Iterable[str]) -> Callable[[web.Request], str]:
    """A function giving a request's client address, given ``server.trusted_proxies``."""
    proxies = AddressSet(trusted)

    def peer(request: web.Request) -> str:
        return request.remote or UNKNOWN

    if not proxies:
        return peer

    def through_proxies(request: web.Request) -> str:
        forwarded = request.headers.getall("X-Forwarded-For", ())
        return forwarded_client(request.remote or UNKNOWN, forwarded, proxies)

    return through_proxies

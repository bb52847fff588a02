"""Which addresses are this machine's or the organization's: the checks that keep traffic on-prem."""

from __future__ import annotations

import ipaddress

# Networks an organization's own servers live on. Explicit, because ipaddress's is_private also covers
# documentation and reserved ranges that are no one's private network.
ON_PREM_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "::1/128", "fc00::/7",
))


def is_private_address(address: str) -> bool:
    """Whether an IP address is on loopback or one of the on-prem networks."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in ON_PREM_NETWORKS if network.version == ip.version)


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine's loopback only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_ip(host: str) -> bool:
    """Whether `host` is an IP address rather than a name."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return True
    except ValueError:
        return False


def client_address(peer: str | None, forwarded_for: str | None, trusted_proxies: "tuple[str, ...] | list[str]") -> str | None:
    """The address of the client behind a request: the peer's own address, unless the peer is one of the
    trusted reverse proxies (addresses or networks), in which case the right-most X-Forwarded-For entry that
    is not itself a trusted proxy (the left ones could be written by the client). None when it cannot be
    known (no peer; a trusted proxy that sent no X-Forwarded-For)."""
    networks = []
    for entry in trusted_proxies:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            continue

    def parse(address: str) -> "ipaddress.IPv4Address | ipaddress.IPv6Address | None":
        try:
            ip = ipaddress.ip_address(address.strip().strip("[]"))
        except ValueError:
            return None
        mapped = getattr(ip, "ipv4_mapped", None)  # "::ffff:127.0.0.1", as a dual-stack server sees IPv4
        return mapped if mapped is not None else ip

    def trusted(ip: "ipaddress.IPv4Address | ipaddress.IPv6Address") -> bool:
        return any(ip.version == network.version and ip in network for network in networks)

    own = parse(peer) if peer else None
    if own is None:
        return peer or None
    if not trusted(own):
        return str(own)
    hops = [h.strip() for h in (forwarded_for or "").split(",") if h.strip()]
    for hop in reversed(hops):
        ip = parse(hop)
        if ip is None:
            return None  # not an address: written by someone, not by our proxy
        if not trusted(ip):
            return str(ip)
    return None

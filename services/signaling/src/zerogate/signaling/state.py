"""Signaling's decisions, apart from any I/O: which gateway, which address, which secrets.

Everything here is a pure function of its arguments (randomness is passed
in), so the choices are tested without sockets or a bus.
"""

from __future__ import annotations

import base64
import ipaddress
import math
import random
import secrets
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import SecretStr

from zerogate.common.messages.relay import RelayOffer
from zerogate.common.messages.signaling import Connection, IceCredentials, RelayInfo
from zerogate.proto.net import IPNetwork

EARTH_RADIUS_KM = 6371.0  # mean radius, as the relay registry uses
ICE_CHARS = string.ascii_letters + string.digits + "+/"  # RFC 8445 §5.3 ice-char
ICE_UFRAG_LEN = 8  # at least 4 characters (RFC 8445 §5.3)
ICE_PWD_LEN = 24  # at least 22 characters (RFC 8445 §5.3)
PSK_BYTES = 32  # WireGuard preshared key (whitepaper §5.4)
#: Fresh TURN credentials are handed out once this share of their life is gone.
CREDENTIAL_REFRESH_AT = 0.75


@dataclass(frozen=True, slots=True)
class GatewayCandidate:
    """An online gateway of the resource's site, with where it is (if known)."""

    id: str
    lat: float | None = None
    lon: float | None = None
    version: str = ""


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (lat, lon) points in kilometres."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def choose_gateway(
    online: Sequence[GatewayCandidate],
    *,
    connected: Iterable[str] = (),
    near: tuple[float, float] | None = None,
    rng: random.Random | None = None,
) -> GatewayCandidate | None:
    """The gateway to serve a client: one it is connected to, else the nearest, else random.

    As Firezone's portal does (``load_balance_gateways``): a gateway the client
    already has a tunnel to wins (no new connection is needed); otherwise the
    nearest by great-circle distance when the client's and gateways' places are
    known (gateways of unknown place come after located ones); ties and the
    rest are broken at random.
    """
    if not online:
        return None
    pick = rng or random.Random()
    wanted = set(connected)
    already = [g for g in online if g.id in wanted]
    if already:
        return pick.choice(already)
    if near is not None:
        located = [g for g in online if g.lat is not None and g.lon is not None]
        if located:
            best = min(haversine_km(near, (g.lat, g.lon)) for g in located)  # type: ignore[arg-type]
            closest = [
                g
                for g in located
                if haversine_km(near, (g.lat, g.lon)) <= best + 1.0  # type: ignore[arg-type]
            ]
            return pick.choice(closest)
    return pick.choice(list(online))


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: Sequence[IPNetwork]
) -> str | None:
    """The agent's address: the socket peer, or ``X-Forwarded-For`` behind trusted proxies.

    The header is read right to left, skipping hops that are trusted proxies;
    the first untrusted hop is the client. Nothing in the header is believed
    unless the socket peer itself is a trusted proxy.
    """
    if peer is None:
        return None

    def trusted_hop(value: str) -> bool:
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            return False
        return any(ip.version == net.version and ip in net for net in trusted)

    if not forwarded_for or not trusted_hop(peer):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed header proves nothing
        if not trusted_hop(hop):
            return hop
    return hops[0] if hops else peer


def _ice_string(length: int, rng: secrets.SystemRandom | random.Random) -> str:
    return "".join(rng.choice(ICE_CHARS) for _ in range(length))


def new_connection(rng: secrets.SystemRandom | random.Random | None = None) -> Connection:
    """Fresh secrets for a new client ⇄ gateway connection: a PSK and both ICE credentials."""
    source = rng or secrets.SystemRandom()
    psk = bytes(source.getrandbits(8) for _ in range(PSK_BYTES))
    return Connection(
        preshared_key=SecretStr(base64.b64encode(psk).decode()),
        client_ice=IceCredentials(
            ufrag=_ice_string(ICE_UFRAG_LEN, source),
            pwd=SecretStr(_ice_string(ICE_PWD_LEN, source)),
        ),
        gateway_ice=IceCredentials(
            ufrag=_ice_string(ICE_UFRAG_LEN, source),
            pwd=SecretStr(_ice_string(ICE_PWD_LEN, source)),
        ),
    )


def relay_infos(offers: Iterable[RelayOffer]) -> list[RelayInfo]:
    """The registry's offers as agents receive them."""
    return [
        RelayInfo(
            id=offer.relay_id,
            addresses=[str(address) for address in offer.addresses],
            username=offer.username,
            password=offer.password,
            realm=offer.realm,
            expires_at=offer.expires_at,
        )
        for offer in offers
    ]


def refresh_due(relays: Iterable[RelayInfo], issued_at: datetime) -> datetime | None:
    """When fresh TURN credentials should be handed out (before the first expires)."""
    expiries = [relay.expires_at for relay in relays]
    if not expiries:
        return None
    life = min(expiries) - issued_at
    return issued_at + max(life * CREDENTIAL_REFRESH_AT, timedelta(seconds=1))

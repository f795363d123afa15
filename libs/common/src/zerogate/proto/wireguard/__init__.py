"""WireGuard sans-IO core: codecs, Noise_IKpsk2 handshake, cookies, sessions,
timers and cryptokey routing.

Usage by a shell (it owns the TUN device, the UDP socket and the clock)::

    dev = Device(private_key, now=monotonic(), unix_time=wall())  # rng=Random(seed) in tests
    dev.add_peer(peer_pub, allowed_ips=[...], endpoint=("192.0.2.1", 51820), now=t)
    out = dev.encrypt(ip_packet, now)          # (endpoint, datagram) or None
    pkt = dev.decrypt(datagram, source, now)   # IP packet for the TUN or None
    while (tx := dev.poll_transmit()) is not None: send(tx.destination, tx.data)
    while (ev := dev.poll_event()) is not None: ...
    deadline = dev.poll_timeout(); ...; dev.handle_timeout(now)

The core imports nothing of ours outside ``zerogate.proto`` and never reads a
clock or touches a socket.
"""

from zerogate.proto.net import Endpoint
from zerogate.proto.wireguard.device import UNSET, Device
from zerogate.proto.wireguard.errors import (
    LocalProtocolError,
    RemoteProtocolError,
    WireGuardError,
)
from zerogate.proto.wireguard.events import (
    Event,
    HandshakeCompleted,
    HandshakeTimedOut,
    PeerEndpointChanged,
    SessionExpired,
    Transmit,
)
from zerogate.proto.wireguard.peer import Peer, Session

__all__ = [
    "UNSET",
    "Device",
    "Endpoint",
    "Event",
    "HandshakeCompleted",
    "HandshakeTimedOut",
    "LocalProtocolError",
    "Peer",
    "PeerEndpointChanged",
    "RemoteProtocolError",
    "Session",
    "SessionExpired",
    "Transmit",
    "WireGuardError",
]

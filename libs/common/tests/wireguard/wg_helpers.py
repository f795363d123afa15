"""Test helpers: two WireGuard cores over a fake link, driven by a virtual clock.

The link is a list of datagrams in flight; ``flush`` delivers them (optionally
dropping some) until both sides are quiet. ``advance`` moves the virtual clock
from deadline to deadline, firing timers and flushing after each, the way an
asyncio shell would.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from zerogate.proto.wireguard import Device, Endpoint, Event, Transmit
from zerogate.proto.wireguard.crypto import generate_private_key

UNIX0 = 1_700_000_000.0  # wall clock at NOW0
NOW0 = 1000.0  # monotonic clock at the start of every test
A_ADDR: Endpoint = ("192.0.2.1", 51820)
B_ADDR: Endpoint = ("198.51.100.2", 51821)
A_TUN4, B_TUN4 = "10.0.0.1", "10.0.0.2"
A_TUN6, B_TUN6 = "fd00::1", "fd00::2"


def _checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def ipv4(src: str, dst: str, payload: bytes = b"payload", proto: int = 17) -> bytes:
    """A minimal IPv4 packet (valid header checksum)."""
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        0,
        0,
        64,
        proto,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + payload


def ipv6(src: str, dst: str, payload: bytes = b"payload", next_header: int = 17) -> bytes:
    """A minimal IPv6 packet."""
    header = struct.pack(
        "!IHBB16s16s",
        6 << 28,
        len(payload),
        next_header,
        64,
        ipaddress.IPv6Address(src).packed,
        ipaddress.IPv6Address(dst).packed,
    )
    return header + payload


@dataclass
class Wire:
    """One datagram that went over the fake link."""

    sender: str  # "a" or "b"
    at: float
    data: bytes

    @property
    def kind(self) -> int:
        return self.data[0]


@dataclass
class Link:
    """Devices ``a`` and ``b`` (``a`` configured to initiate) and the link between them."""

    a: Device
    b: Device
    now: float = NOW0
    wire: list[Wire] = field(default_factory=list)
    to_a: list[bytes] = field(default_factory=list)  # plaintext delivered to a's TUN
    to_b: list[bytes] = field(default_factory=list)
    events_a: list[Event] = field(default_factory=list)
    events_b: list[Event] = field(default_factory=list)
    drop: Callable[[Wire], bool] = field(default=lambda _w: False)
    source_of_a: Endpoint = A_ADDR  # the source address b sees for a's datagrams

    def _pending(self) -> list[tuple[str, Transmit]]:
        out: list[tuple[str, Transmit]] = []
        while (tx := self.a.poll_transmit()) is not None:
            out.append(("a", tx))
        while (tx := self.b.poll_transmit()) is not None:
            out.append(("b", tx))
        return out

    def deliver(self, sender: str, data: bytes) -> bytes | None:
        """Deliver one datagram now (unless dropped); returns the plaintext, if any."""
        w = Wire(sender, self.now, data)
        self.wire.append(w)
        if self.drop(w):
            return None
        if sender == "a":
            plain = self.b.decrypt(data, self.source_of_a, self.now)
            if plain is not None:
                self.to_b.append(plain)
        else:
            plain = self.a.decrypt(data, B_ADDR, self.now)
            if plain is not None:
                self.to_a.append(plain)
        return plain

    def flush(self) -> None:
        for _ in range(1000):
            pending = self._pending()
            if not pending:
                break
            for sender, tx in pending:
                self.deliver(sender, tx.data)
        self._events()

    def _events(self) -> None:
        while (ev := self.a.poll_event()) is not None:
            self.events_a.append(ev)
        while (ev := self.b.poll_event()) is not None:
            self.events_b.append(ev)

    def send(self, sender: str, packet: bytes) -> bytes | None:
        """A packet enters ``sender``'s TUN; deliver what comes out, then flush."""
        dev = self.a if sender == "a" else self.b
        out = dev.encrypt(packet, self.now)
        plain = None
        if out is not None:
            plain = self.deliver(sender, out[1])
        self.flush()
        return plain

    def advance(self, seconds: float) -> None:
        """Move the clock forward, firing every timer on the way."""
        target = self.now + seconds
        for _ in range(100_000):
            deadlines = [t for t in (self.a.poll_timeout(), self.b.poll_timeout()) if t is not None]
            nxt = min(deadlines, default=None)
            if nxt is None or nxt > target:
                break
            self.now = max(self.now, nxt)
            self.a.handle_timeout(self.now)
            self.b.handle_timeout(self.now)
            self.flush()
        self.now = target
        self._events()

    def handshake(self) -> None:
        """Complete a handshake initiated by ``a``, with a first packet each way."""
        self.send("a", ipv4(A_TUN4, B_TUN4, b"hello"))
        self.send("b", ipv4(B_TUN4, A_TUN4, b"hello back"))
        assert self.a.peers[self.b.public_key].has_session
        assert self.b.peers[self.a.public_key].has_session

    def sent(self, sender: str, kind: int | None = None, since: float | None = None) -> list[Wire]:
        return [
            w
            for w in self.wire
            if w.sender == sender
            and (kind is None or w.kind == kind)
            and (since is None or w.at >= since)
        ]


def make_link(
    *,
    psk_a: bytes | None = None,
    psk_b: bytes | None = None,
    keepalive_a: int | None = None,
    b_knows_a_endpoint: bool = False,
) -> Link:
    a = Device(generate_private_key(), now=NOW0, unix_time=UNIX0)
    b = Device(generate_private_key(), now=NOW0, unix_time=UNIX0)
    a.add_peer(
        b.public_key,
        preshared_key=psk_a,
        allowed_ips=[ipaddress.ip_network(f"{B_TUN4}/32"), ipaddress.ip_network(f"{B_TUN6}/128")],
        endpoint=B_ADDR,
        persistent_keepalive=keepalive_a,
        now=NOW0,
    )
    b.add_peer(
        a.public_key,
        preshared_key=psk_b,
        allowed_ips=[ipaddress.ip_network(f"{A_TUN4}/32"), ipaddress.ip_network(f"{A_TUN6}/128")],
        endpoint=A_ADDR if b_knows_a_endpoint else None,
        now=NOW0,
    )
    return Link(a, b)

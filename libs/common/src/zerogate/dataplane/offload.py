"""TCP segmentation and coalescing for a TUN device opened with ``IFF_VNET_HDR``.

With ``TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)`` the kernel hands
the TUN reader TCP "super-packets" of up to 64 KiB with a ``virtio_net_hdr``
in front (linux/virtio_net.h): ``flags, gso_type, hdr_len, gso_size,
csum_start, csum_offset``, little-endian on every host we run on. Each
WireGuard datagram must carry one MTU-sized packet, so :func:`split_packet`
cuts a super-packet into ``gso_size`` segments and writes every header field
the kernel left for the device: IPv4 total length, identification and header
checksum; IPv6 payload length; TCP sequence number, flags and checksum.

In the other direction :class:`TcpCoalescer` glues consecutive segments of one
TCP flow into one super-packet with ``VIRTIO_NET_HDR_GSO_TCPV4/6`` (GRO), so
the kernel runs its TCP receive path once per batch instead of once per
segment. The packets written are marked ``DATA_VALID`` when they are not
coalesced: WireGuard's AEAD already authenticated them (the kernel's own
WireGuard marks decrypted packets CHECKSUM_UNNECESSARY likewise).

Checksums use one trick: the ones'-complement sum of 16-bit words equals the
big-endian integer value of the bytes modulo 0xFFFF (2**16 ≡ 1 mod 0xFFFF), and
``int.from_bytes`` with ``%`` runs in C.

Malformed super-packets (which only our own kernel can hand us) are dropped.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

VIRTIO_NET_HDR_LEN = 10
VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
VIRTIO_NET_HDR_F_DATA_VALID = 2
VIRTIO_NET_HDR_GSO_NONE = 0
VIRTIO_NET_HDR_GSO_TCPV4 = 1
VIRTIO_NET_HDR_GSO_TCPV6 = 4
VIRTIO_NET_HDR_GSO_ECN = 0x80
IPPROTO_TCP = 6
IPV6_HEADER_LEN = 40  # RFC 8200 §3
TCP_CHECKSUM_OFFSET = 16  # RFC 9293 §3.1
TCP_FLAG_FIN = 0x01
TCP_FLAG_SYN = 0x02
TCP_FLAG_RST = 0x04
TCP_FLAG_PSH = 0x08
TCP_FLAG_ACK = 0x10
TCP_FLAG_URG = 0x20
TCP_FLAG_CWR = 0x80
MAX_COALESCED = 65535 - 60  # an IPv4 total length must fit 16 bits
MAX_SEGMENTS = 64

_HDR = struct.Struct("<BBHHHH")
Rewrite = Callable[[bytes], bytes | bytearray]
"""A per-packet translation applied while splitting (see :func:`split_packet`)."""
Admit = Callable[[bytes], bytes | bytearray | None]
"""A per-packet check and translation applied while coalescing (None: not written)."""
IoVec = list[bytes | bytearray | memoryview]
"""The pieces of one TUN write, for ``os.writev`` (no copy into one buffer)."""
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
PLAIN_HEADER = _HDR.pack(VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_GSO_NONE, 0, 0, 0, 0)


def ones_sum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """Ones'-complement sum of ``data`` as 16-bit big-endian words, folded (0..0xFFFF)."""
    if len(data) & 1:
        data = bytes(data) + b"\x00"
    return _fold(int.from_bytes(data, "big") + initial)


def _fold(value: int) -> int:
    """``value`` folded with end-around carry (RFC 1071 §2): a non-zero multiple of
    0xFFFF folds to 0xFFFF ("negative zero"), as the kernel's sum does, not to 0."""
    total = value % 0xFFFF
    return 0xFFFF if total == 0 and value else total


def checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The Internet checksum (RFC 1071) of ``data`` plus an already folded ``initial``."""
    return ~ones_sum(data, initial) & 0xFFFF


def _pseudo_sum(packet: bytes | bytearray, version: int, length: int) -> int:
    """Sum of the TCP pseudo-header (RFC 9293 §3.1, RFC 8200 §8.1)."""
    addresses = packet[12:20] if version == 4 else packet[8:40]
    return (int.from_bytes(addresses, "big") + IPPROTO_TCP + length) % 0xFFFF


def split_packet(buffer: bytes, rewrite: Rewrite | None = None) -> Sequence[bytes | bytearray]:
    """Turn what a vnet-header TUN read returned into plain IP packets.

    ``rewrite`` (a packet in, the same packet or a translated one of the same
    length out) is applied to every packet returned, as if called on each;
    a super-packet's segments all share one IP and TCP header, so it runs
    once, on that header, before the segments get their checksums (the
    gateway's address translation: one call per 64 KiB instead of per
    segment). It must decide on the IP and transport headers alone.
    """
    if len(buffer) <= VIRTIO_NET_HDR_LEN:
        return []
    flags, gso_type, _hdr_len, gso_size, csum_start, csum_offset = _HDR.unpack_from(buffer)
    kind = gso_type & ~VIRTIO_NET_HDR_GSO_ECN
    if kind == VIRTIO_NET_HDR_GSO_NONE:
        packet = buffer[VIRTIO_NET_HDR_LEN:]
        if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
            packet = _finish_checksum(packet, csum_start, csum_offset)
        return [packet if rewrite is None else rewrite(packet)]
    if kind in (VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6) and gso_size > 0:
        return _segment_tcp(bytearray(buffer[VIRTIO_NET_HDR_LEN:]), gso_size, rewrite)
    return []  # UDP fragmentation offload is never enabled


def _finish_checksum(packet: bytes, start: int, offset: int) -> bytes:
    """Fill a CHECKSUM_PARTIAL field: the pseudo-header sum is there already."""
    field = start + offset
    if start >= len(packet) or field + 2 > len(packet):
        return packet
    value = checksum(memoryview(packet)[start:])
    if value == 0 and offset == 6:  # UDP: 0 means "no checksum" (RFC 768)
        value = 0xFFFF
    return packet[:field] + _U16.pack(value) + packet[field + 2 :]


def _segment_tcp(packet: bytearray, mss: int, rewrite: Rewrite | None) -> list[bytes]:
    if len(packet) < 40:  # smallest IPv4 + TCP header
        return []
    version = packet[0] >> 4
    if version == 4:
        ip_len = (packet[0] & 0x0F) * 4
        if ip_len < 20 or packet[9] != IPPROTO_TCP:
            return []
    elif version == 6:
        ip_len = IPV6_HEADER_LEN
        if len(packet) < 60 or packet[6] != IPPROTO_TCP:
            return []  # extension headers: the kernel does not offload these to us
    else:
        return []
    if len(packet) < ip_len + 20:
        return []
    tcp_len = (packet[ip_len + 12] >> 4) * 4
    header_len = ip_len + tcp_len
    if tcp_len < 20 or len(packet) < header_len:
        return []
    payload = memoryview(packet)[header_len:]
    total = len(payload)
    seq = _U32.unpack_from(packet, ip_len + 4)[0]
    flags = packet[ip_len + 13]
    ip_id = _U16.unpack_from(packet, 4)[0] if version == 4 else 0
    if rewrite is None:
        header = bytearray(packet[:header_len])
    else:
        header = bytearray(rewrite(bytes(packet[:header_len])))
        if len(header) != header_len:
            return []  # a rewrite changes addresses, never a length
    header[ip_len + 16 : ip_len + 18] = b"\x00\x00"
    if version == 4:
        header[10:12] = b"\x00\x00"
        addresses = int.from_bytes(header[12:20], "big")
    else:
        addresses = int.from_bytes(header[8:40], "big")
    out: list[bytes] = []
    append = out.append
    from_bytes = int.from_bytes
    csum_at = ip_len + 16
    for index, start in enumerate(range(0, total, mss)):
        chunk = payload[start : start + mss]
        size = len(chunk)
        last = start + mss >= total
        segment_flags = flags
        if not last:
            segment_flags &= ~(TCP_FLAG_FIN | TCP_FLAG_PSH)
        if index:
            segment_flags &= ~TCP_FLAG_CWR
        header[ip_len + 13] = segment_flags
        _U32.pack_into(header, ip_len + 4, (seq + start) & 0xFFFFFFFF)
        if version == 4:
            _U16.pack_into(header, 2, header_len + size)
            _U16.pack_into(header, 4, (ip_id + index) & 0xFFFF)
            header[10:12] = b"\x00\x00"
            _U16.pack_into(header, 10, checksum(header[:ip_len]))
        else:
            _U16.pack_into(header, 4, tcp_len + size)
        header[csum_at : csum_at + 2] = b"\x00\x00"
        # one pass over the payload, straight from the super-packet (no copy)
        body = from_bytes(chunk, "big")
        if size & 1:
            body <<= 8
        total_sum = (
            addresses
            + IPPROTO_TCP
            + tcp_len
            + size
            + from_bytes(header[ip_len:header_len], "big")
            + body
        )
        _U16.pack_into(header, csum_at, ~_fold(total_sum) & 0xFFFF)
        append(bytes(header) + chunk)
    return out


class TcpCoalescer:
    """Glue runs of TCP segments into GSO super-packets for a vnet-header TUN write.

    A segment joins the run before it when it belongs to the same flow (addresses
    and ports), continues its sequence numbers, carries the same ACK number,
    window, TCP options, header length, TOS/traffic class and TTL/hop limit,
    has only ACK (and PSH) set, and is not longer than the run's first segment
    (which sets ``gso_size``). A shorter segment or PSH ends the run, like the
    kernel's own GRO (net/ipv4/tcp_offload.c).

    With ``rewrite`` (a packet in; the packet to write, or None to drop it), the
    segments are glued as they came and ``rewrite`` sees each run's shared
    header once, as :func:`split_packet` does on the way out: a run is one flow
    with only ACK/PSH set, so one decision and one translation hold for all of
    its segments, and the super-packet's checksums are made afresh from the
    rewritten header. A segment written alone is rewritten whole.
    """

    def coalesce(
        self, packets: Sequence[bytes | bytearray], rewrite: Admit | None = None
    ) -> list[IoVec]:
        """Return one buffer list per ``os.writev``, each starting with a virtio_net_hdr."""
        out: list[IoVec | None] = []  # None: what ``rewrite`` dropped
        append = out.append
        run: list[bytes | bytearray] = []
        run_hl = run_t = run_mss = run_bytes = next_seq = 0
        run_flow: bytes | bytearray = b""
        run_ack: bytes | bytearray = b""
        run_opts: bytes | bytearray = b""
        run_ip: bytes | bytearray = b""
        from_bytes = int.from_bytes
        for p in packets:
            n = len(p)
            first = p[0] if n else 0
            if first == 0x45:
                if n < 40 or p[9] != IPPROTO_TCP or p[6] & 0x3F or p[7] or (p[2] << 8 | p[3]) != n:
                    t = 0
                else:
                    t = 20
            elif first >> 4 == 6:
                t = (
                    IPV6_HEADER_LEN
                    if n >= 60 and p[6] == IPPROTO_TCP and (p[4] << 8 | p[5]) == n - 40
                    else 0
                )
            else:
                t = 0
            hl = t + ((p[t + 12] >> 4) << 2) if t else 0
            if not t or hl < t + 20 or n < hl:
                if run:
                    out.extend(_emit(run, run_t, run_hl, run_mss, run_bytes, rewrite))
                    run = []
                append([PLAIN_HEADER, p] if rewrite is None else _alone(p, rewrite))
                continue
            flags = p[t + 13]
            size = n - hl
            seq = from_bytes(p[t + 4 : t + 8], "big")
            if t == 20:
                flow = p[12 : t + 4]
                ip_same = p[1:2] + p[8:9]
            else:
                flow = p[8 : t + 4]
                ip_same = p[0:4] + p[7:8]
            if (
                run
                and size  # a pure ACK never joins: the kernel would cut it away (a dup ACK)
                and seq == next_seq
                and hl == run_hl
                and size <= run_mss
                and not flags & ~(TCP_FLAG_ACK | TCP_FLAG_PSH)
                and len(run) < MAX_SEGMENTS
                and run_bytes + size <= MAX_COALESCED
                and flow == run_flow
                and p[t + 8 : t + 12] == run_ack
                and p[t + 14 : t + 16] + p[t + 20 : hl] == run_opts
                and ip_same == run_ip
            ):
                run.append(p)
                run_bytes += size
                next_seq = (seq + size) & 0xFFFFFFFF
                if size < run_mss or flags & TCP_FLAG_PSH:
                    out.extend(_emit(run, run_t, run_hl, run_mss, run_bytes, rewrite))
                    run = []
                continue
            if run:
                out.extend(_emit(run, run_t, run_hl, run_mss, run_bytes, rewrite))
                run = []
            if size == 0 or flags & ~TCP_FLAG_ACK:  # SYN/FIN/RST/URG/CWR/PSH, pure ACKs: alone
                append([PLAIN_HEADER, p] if rewrite is None else _alone(p, rewrite))
                continue
            run = [p]
            run_t = t
            run_hl = hl
            run_mss = run_bytes = size
            next_seq = (seq + size) & 0xFFFFFFFF
            run_flow = flow
            run_ack = p[t + 8 : t + 12]
            run_opts = p[t + 14 : t + 16] + p[t + 20 : hl]
            run_ip = ip_same
        if run:
            out.extend(_emit(run, run_t, run_hl, run_mss, run_bytes, rewrite))
        if rewrite is None:
            return out  # type: ignore[return-value]  # nothing was dropped
        return [iov for iov in out if iov is not None]


def _alone(packet: bytes | bytearray, rewrite: Admit) -> IoVec | None:
    rewritten = rewrite(packet if isinstance(packet, bytes) else bytes(packet))
    return None if rewritten is None else [PLAIN_HEADER, rewritten]


def _emit(
    run: list[bytes | bytearray],
    ip_len: int,
    header_len: int,
    mss: int,
    payload_len: int,
    rewrite: Admit | None = None,
) -> list[IoVec]:
    first = run[0]
    if rewrite is not None:  # one decision and one translation for the whole run
        head = rewrite(first if isinstance(first, bytes) else bytes(first))
        if head is None:  # refused, or held while a name resolves: each segment on its own
            return [iov for p in run[1:] if (iov := _alone(p, rewrite)) is not None]
        if len(run) == 1:
            return [[PLAIN_HEADER, head]]
    elif len(run) == 1:
        return [[PLAIN_HEADER, first]]
    else:
        head = first
    last = run[-1]
    header = bytearray(head[:header_len])
    # PSH of the last segment travels on the super-packet.
    header[ip_len + 13] |= last[ip_len + 13] & TCP_FLAG_PSH
    version = first[0] >> 4
    tcp_total = header_len - ip_len + payload_len
    if version == 4:
        _U16.pack_into(header, 2, header_len + payload_len)
        header[10:12] = b"\x00\x00"
        _U16.pack_into(header, 10, checksum(header[:ip_len]))
        gso_type = VIRTIO_NET_HDR_GSO_TCPV4
    else:
        _U16.pack_into(header, 4, tcp_total)
        gso_type = VIRTIO_NET_HDR_GSO_TCPV6
    # CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum, not inverted.
    _U16.pack_into(header, ip_len + 16, _pseudo_sum(header, version, tcp_total) or 0xFFFF)
    vnet = _HDR.pack(
        VIRTIO_NET_HDR_F_NEEDS_CSUM, gso_type, header_len, mss, ip_len, TCP_CHECKSUM_OFFSET
    )
    parts: IoVec = [vnet + header]
    parts += [memoryview(p)[header_len:] for p in run]
    return [parts]

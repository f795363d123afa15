"""A few reads and patches of DNS messages in wire format (RFC 1035 §4.1), for fast paths.

The stub resolver answers most queries from a cache of responses that
dnspython's codec built or checked once. Serving one again needs no codec:
find the question (:func:`read_query`), take the cached response for it, put
the query's id, RD and CD bits and the question exactly as asked (its letter
case, RFC 4343, and 0x20 randomisation) into it (:func:`reply_to`), and count
its TTLs down (:func:`ttl_offsets`, :func:`with_ttls`).

Only the plain shape takes this path: a QUERY with one question, no answer
or authority records, and at most an EDNS OPT record (RFC 6891 §6.1.2).
Anything else is for the codec to judge. Nothing here raises on bad input;
a function that cannot read a message answers ``None``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

HEADER_LEN: Final = 12  # RFC 1035 §4.1.1
MAX_NAME_WIRE: Final = 255  # RFC 1035 §3.1
TYPE_OPT: Final = 41  # RFC 6891 §6.1.1
TYPE_SOA: Final = 6
#: Responses without EDNS fit in 512 bytes over UDP (RFC 1035 §4.2.1).
CLASSIC_UDP_SIZE: Final = 512
#: Flags of a query we serve from the cache: QR=0 and OPCODE=QUERY (RFC 1035 §4.1.1).
_QR_OPCODE_MASK: Final = 0xF8
FLAG_RD: Final = 0x01  # in the first flags byte
FLAG_CD: Final = 0x10  # in the second flags byte (RFC 4035 §3.2.2)
FLAG_TC: Final = 0x02  # in the first flags byte
EDNS_DO: Final = 0x8000  # RFC 3225

_U16: Final = struct.Struct("!H")
_RR: Final = struct.Struct("!HHIH")  # type, class, ttl, rdlength


@dataclass(frozen=True, slots=True)
class Query:
    """What the fast path needs of a query.

    ``key`` is the question with the name in lower case, plus a byte saying
    whether the query had EDNS and the DO bit: identical keys get identical
    answers (up to id, flags and letter case). ``end`` is where the question
    ends; ``udp_size`` how large a UDP answer may be.
    """

    key: bytes
    end: int
    qtype: int
    udp_size: int


def read_query(data: bytes) -> Query | None:
    """The question of a plain query, or ``None`` when it is not one (see the module doc)."""
    n = len(data)
    if n < HEADER_LEN + 5 or data[2] & _QR_OPCODE_MASK:
        return None
    if data[4:10] != b"\x00\x01\x00\x00\x00\x00" or data[10] or data[11] > 1:
        return None
    pos = HEADER_LEN
    while True:
        length = data[pos] if pos < n else -1
        if length == 0:
            break
        if length < 0 or length > 63:  # compressed or cut short: not in a question
            return None
        pos += length + 1
        if pos - HEADER_LEN > MAX_NAME_WIRE:
            return None
    name_end = pos + 1
    end = name_end + 4
    if end > n:
        return None
    qtype = (data[name_end] << 8) | data[name_end + 1]
    if data[11] == 0:
        if end != n:
            return None
        marker = b"\x00"
        udp_size = CLASSIC_UDP_SIZE
    else:
        # One OPT record: root name, type 41, class = UDP size, TTL = ext flags.
        if n < end + 11 or data[end] != 0 or (data[end + 1] << 8 | data[end + 2]) != TYPE_OPT:
            return None
        rdlen = data[end + 9] << 8 | data[end + 10]
        if end + 11 + rdlen != n or data[end + 5] != 0:  # EDNS version 0 only
            return None
        udp_size = max(CLASSIC_UDP_SIZE, data[end + 3] << 8 | data[end + 4])
        marker = b"\x03" if data[end + 7] & 0x80 else b"\x01"
    key = data[HEADER_LEN:name_end].lower() + data[name_end:end] + marker
    return Query(key, end, qtype, udp_size)


def reply_to(template: bytes, query: bytes, end: int) -> bytes:
    """``template`` (a cached response to the same question) as the answer to ``query``.

    The id and the RD and CD bits come from the query, and the question too,
    byte for byte (same length as the template's, only the letter case may differ).
    """
    first = (template[2] & ~FLAG_RD) | (query[2] & FLAG_RD)
    second = (template[3] & ~FLAG_CD) | (query[3] & FLAG_CD)
    flags = bytes((first, second))
    return query[:2] + flags + template[4:HEADER_LEN] + query[HEADER_LEN:end] + template[end:]


def _skip_name(data: bytes, pos: int) -> int:
    """The offset after a (possibly compressed) name at ``pos``; -1 when it is broken."""
    n = len(data)
    for _ in range(128):
        if pos >= n:
            return -1
        length = data[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:
            return pos + 2 if pos + 2 <= n else -1
        if length & 0xC0:
            return -1
        pos += length + 1
    return -1


@dataclass(frozen=True, slots=True)
class TtlMap:
    """Where a response's TTLs are, and what they say.

    ``offsets`` holds the offset of every TTL field but the OPT record's
    (which is not a TTL); ``min_ttl`` is the smallest of them, for an
    answer's lifetime; ``negative_ttl`` is, for a response with no answer,
    the SOA's min(TTL, MINIMUM) of RFC 2308 §5 (None without an SOA).
    """

    offsets: tuple[int, ...]
    ttls: tuple[int, ...]
    min_ttl: int | None
    answers: int
    negative_ttl: int | None


def ttl_offsets(data: bytes) -> TtlMap | None:
    """Walk a response's records; ``None`` when it does not parse."""
    n = len(data)
    if n < HEADER_LEN:
        return None
    qd, an, ns, ar = struct.unpack_from("!HHHH", data, 4)
    pos = HEADER_LEN
    for _ in range(qd):
        pos = _skip_name(data, pos)
        if pos < 0 or pos + 4 > n:
            return None
        pos += 4
    offsets: list[int] = []
    ttls: list[int] = []
    negative: int | None = None
    for index in range(an + ns + ar):
        pos = _skip_name(data, pos)
        if pos < 0 or pos + 10 > n:
            return None
        rtype, _rclass, ttl, rdlen = _RR.unpack_from(data, pos)
        rdata = pos + 10
        if rdata + rdlen > n:
            return None
        if rtype != TYPE_OPT:
            offsets.append(pos + 4)
            ttls.append(ttl)
            if rtype == TYPE_SOA and an == 0 and an <= index < an + ns and rdlen >= 20:
                minimum = struct.unpack_from("!I", data, rdata + rdlen - 4)[0]
                negative = min(ttl, minimum)
        pos = rdata + rdlen
    if pos != n:
        return None
    return TtlMap(tuple(offsets), tuple(ttls), min(ttls) if ttls else None, an, negative)


def with_ttls(data: bytes, ttl_map: TtlMap, elapsed: int) -> bytes:
    """``data`` with every TTL counted down by ``elapsed`` seconds (never below 0)."""
    if not ttl_map.offsets or elapsed <= 0:
        return data
    out = bytearray(data)
    for offset, ttl in zip(ttl_map.offsets, ttl_map.ttls, strict=True):
        struct.pack_into("!I", out, offset, max(0, ttl - elapsed))
    return bytes(out)


def truncated(response: bytes, end: int) -> bytes:
    """Just the header and question of ``response``, with TC set (RFC 1035 §4.2.1, RFC 7766)."""
    head = bytearray(response[:HEADER_LEN])
    head[2] |= FLAG_TC
    head[6:12] = b"\x00" * 6
    return bytes(head) + response[HEADER_LEN:end]


def message_id(data: bytes) -> int | None:
    return _U16.unpack_from(data)[0] if len(data) >= 2 else None

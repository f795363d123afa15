"""Golden bytes captured from wireguard-go (Debian package, 2026-11) with
throwaway keys: an initiation it sent us (our responder must accept it as
written), and a whole exchange where we initiated (replayed bit for bit)."""

from __future__ import annotations

import ipaddress
import random
import struct

from zerogate.proto.wireguard import Device, HandshakeCompleted, PeerEndpointChanged
from zerogate.proto.wireguard.crypto import public_key
from zerogate.proto.wireguard.messages import Initiation

# keys generated for the capture only
OUR_PRIVATE = bytes.fromhex("c85bcc749184961d4ff474e7dda815f14f726bedc9ef9e468829ab278f92c07f")
GO_PRIVATE = bytes.fromhex("904ca9108e389b1d4cb690f4d3b80b66c0944ce7b6b3c68f280553216b661d63")
PSK = bytes.fromhex("b96ee1a1b86fb7d978c32a6b25ba5e40f286513fc08c9089ce8008728c821004")
GO_INITIATION = bytes.fromhex(
    "01000000fc904cdb5d9ad526f4e8de0c7acc6bd9f55e51d616cf54ca3b5c27872dc0249f"
    "8961f90f38a2bd0df4dbdf04dfdc6a69e66f080d1d84d1e7a530a432f61ce038a6b82f02"
    "0df6a8b00940870e09d8152a8ff2e2273af9f3185373cf1db0e63556ccf4aac589c62abd"
    "07e750240490bbdeed7cfddcdaf432e6dfad1437a273422e000000000000000000000000"
    "00000000"
)
GO_ENDPOINT = ("198.18.7.2", 51820)
CAPTURED_AROUND = 1_795_610_000  # unix seconds, within an hour of the capture
TAI64_LABEL = 2**62 + 10


def _device() -> Device:
    dev = Device(OUR_PRIVATE, now=0.0, unix_time=CAPTURED_AROUND)
    dev.add_peer(public_key(GO_PRIVATE), preshared_key=PSK, now=0.0)
    return dev


def test_captured_initiation_is_accepted_and_answered() -> None:
    assert len(GO_INITIATION) == 148
    msg = Initiation.decode(GO_INITIATION)
    assert msg.mac2 == bytes(16)  # wireguard-go held no cookie
    dev = _device()
    assert dev.decrypt(GO_INITIATION, GO_ENDPOINT, 1.0) is None
    tx = dev.poll_transmit()
    assert tx is not None
    assert tx.destination == GO_ENDPOINT
    assert tx.peer == public_key(GO_PRIVATE)
    assert len(tx.data) == 92
    assert tx.data[0] == 2
    # the response is addressed to wireguard-go's sender index
    assert struct.unpack_from("<I", tx.data, 8)[0] == msg.sender
    assert dev.poll_event() == PeerEndpointChanged(public_key(GO_PRIVATE), GO_ENDPOINT)
    assert dev.poll_event() is None  # completed only when wireguard-go confirms


def test_captured_timestamp_is_a_whitened_tai64n() -> None:
    dev = _device()
    dev.decrypt(GO_INITIATION, GO_ENDPOINT, 1.0)
    stamp = dev.peers[public_key(GO_PRIVATE)].session.greatest_timestamp
    secs, nanos = struct.unpack(">QI", stamp)
    assert abs(secs - TAI64_LABEL - CAPTURED_AROUND) < 86400
    assert nanos % 2**24 == 0  # wireguard-go whitens the low 24 bits
    # replaying the capture is refused
    dev.poll_transmit()
    assert dev.decrypt(GO_INITIATION, GO_ENDPOINT, 5.0) is None
    assert dev.poll_transmit() is None


def test_captured_initiation_for_someone_else_is_ignored() -> None:
    other = Device(GO_PRIVATE, now=0.0, unix_time=CAPTURED_AROUND)  # wrong responder key
    other.add_peer(public_key(OUR_PRIVATE), preshared_key=PSK, now=0.0)
    assert other.decrypt(GO_INITIATION, GO_ENDPOINT, 1.0) is None
    assert other.poll_transmit() is None  # mac1 is keyed to our public key


# --- our initiator against wireguard-go ----------------------------------------
# A second capture: we initiated (with the ephemeral key below) and sent one
# IPv4/UDP packet; wireguard-go answered and sent back an ICMP port-unreachable.
I_OUR_PRIVATE = bytes.fromhex("90c108208321566f6e9fa8449ac724881175c00f3664cd1d615888c54437497e")
I_GO_PRIVATE = bytes.fromhex("880ec54f1dd345a6259721de63c5f5cde2f28c627129d769f35ad54adf98336d")
I_EPHEMERAL = bytes.fromhex("784d21029d26e37391e8d2ddb9cb6df783bb14ff81f4f1de1a2009065d5d4f46")
I_PSK = bytes.fromhex("bf9db980fe1102be135797308d9e625bffe96fd740bfffe4a6cbfbd67928b15a")
I_UNIX_TIME = 1795613756.31  # TAI64N 400000006b06e446 12000000 once whitened
I_LOCAL_INDEX = 0x11223344
I_INITIATION = bytes.fromhex(
    "01000000443322110e6ff8a0bd93a79635fc3d21ec047352aac7d3084cc3e29fdf1f50c6"
    "9d38bb576371b06479afbdb1e7386acce6b9b54985989f2ec85899c8918d3bef08404071"
    "aa344a23774b085f1d8cec13a3e0cf67745a73a9891fa76fa607df71f17c6ee1e525d08b"
    "b94cc887c64573eaa8b39ee1e6af70b77ebc118b4bdaaeb4000000000000000000000000"
    "00000000"
)
I_RESPONSE = bytes.fromhex(
    "02000000526ab07a443322111d62b1a39852acc6f25b8012b8228c9d2eb18f4e3921fb47"
    "157c37e54be3f14d43a54bbc48403c8a0a53bbcd4bbb8aadf35ee430f5b7837d056d2519"
    "11fb344400000000000000000000000000000000"
)
I_PACKET = bytes.fromhex("4500002400010000401166b40a0900010a090002270f1e610010000068656c6c6f2d676f")
I_SENT = bytes.fromhex(
    "04000000526ab07a0000000000000000243deefc1815694e748cd053d5c53515845b65ab"
    "6707d70f2d5144fa9d1b4e868ca797b702afd4eddb0256591447ab8f122e11a88946bcac"
    "7602ec24c9658538"
)
I_BACK = bytes.fromhex(
    "040000004433221100000000000000005c600f714803813be2d2573e9b464ce03cf76aca"
    "ea747a0d137081382b8c222a7d0e721f0de3b7126b24e9827c40ae077105cc7e8ce27e57"
    "3e37e3d9847bd10088fd42e85255531e5cb2ccc250366bea"
)
I_GO_ENDPOINT = ("198.18.7.2", 51820)


class _Replay(random.Random):
    """An rng that hands out the captured sender index and ephemeral key.

    Every 32-bit draw is the capture's sender index and every 32-byte draw its
    ephemeral key (the cookie secret gets that key too, harmlessly); anything
    else (the retransmit jitter) comes from a seeded generator.
    """

    def getrandbits(self, k: int, /) -> int:
        return I_LOCAL_INDEX if k == 32 else super().getrandbits(k)

    def randbytes(self, n: int, /) -> bytes:
        return I_EPHEMERAL if n == 32 else super().randbytes(n)


def test_our_initiator_reproduces_the_capture_and_reads_wireguard_gos_answers() -> None:
    dev = Device(I_OUR_PRIVATE, now=0.0, unix_time=I_UNIX_TIME, rng=_Replay(0))
    go = public_key(I_GO_PRIVATE)
    dev.add_peer(
        go,
        preshared_key=I_PSK,
        allowed_ips=[ipaddress.ip_network("10.9.0.0/24")],
        endpoint=I_GO_ENDPOINT,
        now=0.0,
    )
    assert dev.encrypt(I_PACKET, 0.0) is None  # queued behind the handshake
    init = dev.poll_transmit()
    assert init is not None
    assert init.data == I_INITIATION  # bit-exact, MACs included
    assert dev.decrypt(I_RESPONSE, I_GO_ENDPOINT, 0.01) is None
    assert dev.poll_event() == HandshakeCompleted(go)
    sealed = dev.poll_transmit()
    assert sealed is not None
    assert sealed.data == I_SENT  # what wireguard-go accepted and answered
    reply = dev.decrypt(I_BACK, I_GO_ENDPOINT, 0.02)
    assert reply is not None
    assert reply[0] >> 4 == 4
    assert reply[9] == 1  # ICMP
    assert reply[12:16] == ipaddress.IPv4Address("10.9.0.2").packed
    assert reply[20:22] == b"\x03\x03"  # port unreachable
    assert reply.endswith(b"hello-go")  # it quotes our packet


# --- reproducible handshakes from a seeded rng ------------------------------------
# Device(rng=...) draws every random value (sender indices, ephemeral keys, the
# cookie secret and cookie nonces) from the rng it is given. With fixed keys, a
# fixed clock and seeded rngs, a whole exchange is the same bytes every time:
# initiation, cookie reply (the responder is under load), the initiation resent
# with mac2, response, and the queued packet. Recorded from this core; the
# captures above show that its messages are wireguard-go's.
S_A_PRIVATE = bytes.fromhex("a8" * 32)
S_B_PRIVATE = bytes.fromhex("b0" * 32)
S_UNIX_TIME = 1_800_000_000.5
S_A_ADDR, S_B_ADDR = ("192.0.2.1", 51820), ("192.0.2.2", 51820)
S_PACKET = bytes.fromhex("45000014000000004011000a0a0700010a070002")  # 10.7.0.1 -> 10.7.0.2
S_EXCHANGE = [
    bytes.fromhex(
        "010000007bd5d47e33f3e6b1ab62c008ed0e2400e62a377c0539fc24aaa8e764d6944d81"
        "34030e70c9ceaed56f985d0b4eaaa89f6e3307807ea1924da245b0f1ab58cc043144ad9c"
        "6433d804089b35946ee9fe388d915f3ee03c234e64b24cc228f05c6d9445d81e8cc12eab"
        "888f702a88382d3a715e9cc4403bc25d2d53288278f537e9000000000000000000000000"
        "00000000"
    ),
    bytes.fromhex(
        "030000007bd5d47e2441e3d54410492b788768bcff2218cf8f7373abe8e394da7b03de74"
        "ff11684752320f572cde79f93e45233048158d2ae64494b873dad3d0"
    ),
    bytes.fromhex(
        "01000000e66cb0e46fbe06afa821ca5217c112da6ad4f5182060c3ccabe63c089b6b179c"
        "4c92e35ef30d436fa6189aaaa5bb82810ea1ad807cb9c00f70397846f0f58d6308312593"
        "6a7802d0aff00563e207a36afed732eb50826aaf8ff841995c73a9481492d1a5357b26cb"
        "c3c90728cf4990277ec8871c0b9732a825406bb83f762955376f4f02bee054f32f99298f"
        "f402256e"
    ),
    bytes.fromhex(
        "02000000f807e24ee66cb0e47aff94a45e782fa97f73b649870e89f9e150a18092949fe0"
        "445720512a0f0d0686d0f35bf37c9f7badef7e265beb67ff87d8e7b905c252df766c47e8"
        "2c9aa82300000000000000000000000000000000"
    ),
    bytes.fromhex(
        "04000000f807e24e00000000000000007b8a0450f13647ebe69535f2421322f7c9e2799f"
        "9f8941ea68026a6259b480b355e33b86d28fc73c049fcce7da5d1af3"
    ),
]


def _seeded_exchange(
    rng_a: random.Random | None, rng_b: random.Random | None
) -> tuple[list[bytes], list[bytes]]:
    """Run the exchange above; returns the datagrams in order and what b delivered."""
    a = Device(S_A_PRIVATE, now=0.0, unix_time=S_UNIX_TIME, rng=rng_a)
    b = Device(S_B_PRIVATE, now=0.0, unix_time=S_UNIX_TIME, rng=rng_b)
    a.add_peer(
        b.public_key,
        allowed_ips=[ipaddress.ip_network("10.7.0.2/32")],
        endpoint=S_B_ADDR,
        now=0.0,
    )
    b.add_peer(a.public_key, allowed_ips=[ipaddress.ip_network("10.7.0.1/32")], now=0.0)
    b.set_under_load(True)
    wire: list[bytes] = []
    delivered: list[bytes] = []
    assert a.encrypt(S_PACKET, 0.0) is None  # staged behind the handshake
    while True:
        moved = False
        while (tx := a.poll_transmit()) is not None:
            wire.append(tx.data)
            if (plain := b.decrypt(tx.data, S_A_ADDR, 0.0)) is not None:
                delivered.append(plain)
            moved = True
        while (tx := b.poll_transmit()) is not None:
            wire.append(tx.data)
            a.decrypt(tx.data, S_B_ADDR, 0.0)
            moved = True
        if not moved:
            return wire, delivered


def test_a_seeded_rng_reproduces_a_whole_exchange_bit_for_bit() -> None:
    wire, delivered = _seeded_exchange(random.Random(1), random.Random(2))
    assert [w[0] for w in wire] == [1, 3, 1, 2, 4]  # initiation, cookie, initiation, ...
    assert wire == S_EXCHANGE
    assert delivered == [S_PACKET]
    again, _ = _seeded_exchange(random.Random(1), random.Random(2))
    assert again == wire


def test_other_seeds_or_the_os_generator_give_other_bytes() -> None:
    other, delivered = _seeded_exchange(random.Random(3), random.Random(2))
    assert other[0] != S_EXCHANGE[0]  # sender index and ephemeral key
    assert delivered == [S_PACKET]
    first, _ = _seeded_exchange(None, None)
    second, _ = _seeded_exchange(None, None)
    assert first[0] != second[0]
    assert first[1] != second[1]  # cookie secret and nonce

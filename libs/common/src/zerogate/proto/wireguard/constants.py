"""Protocol constants, with where they are defined.

Whitepaper = "WireGuard: Next Generation Kernel Network Tunnel" (J. A. Donenfeld),
section numbers of the 2020-06-01 revision. Where wireguard-go differs from the
whitepaper in detail we follow wireguard-go (device/constants.go), because that
is the implementation we must interoperate with.
"""

from __future__ import annotations

from typing import Final

# --- Noise and labels (whitepaper §5.4) --------------------------------------
CONSTRUCTION: Final = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"  # §5.4
IDENTIFIER: Final = b"WireGuard v1 zx2c4 Jason@zx2c4.com"  # §5.4
LABEL_MAC1: Final = b"mac1----"  # §5.4.4
LABEL_COOKIE: Final = b"cookie--"  # §5.4.7

KEY_LEN: Final = 32  # X25519 keys and symmetric keys, §5.4
MAC_LEN: Final = 16  # MAC() output, §5.4.4
AEAD_TAG_LEN: Final = 16  # Poly1305 tag
TAI64N_LEN: Final = 12  # §5.4.2
XNONCE_LEN: Final = 24  # XChaCha20-Poly1305 nonce, §5.4.7
COOKIE_LEN: Final = 16  # tau, §5.4.7

# --- Message types and sizes (whitepaper §5.4.2-§5.4.7) ------------------------
MESSAGE_INITIATION: Final = 1
MESSAGE_RESPONSE: Final = 2
MESSAGE_COOKIE_REPLY: Final = 3
MESSAGE_TRANSPORT: Final = 4

INITIATION_SIZE: Final = 148  # §5.4.2
RESPONSE_SIZE: Final = 92  # §5.4.3
COOKIE_REPLY_SIZE: Final = 64  # §5.4.7
TRANSPORT_HEADER_SIZE: Final = 16  # §5.4.6: type, reserved, receiver, counter
TRANSPORT_MIN_SIZE: Final = TRANSPORT_HEADER_SIZE + AEAD_TAG_LEN  # 32: a keepalive
PADDING_MULTIPLE: Final = 16  # §5.4.6: plaintext padded to a multiple of 16

# --- Timers and limits (whitepaper §6.1, wireguard-go device/constants.go) -----
REKEY_AFTER_MESSAGES: Final = 2**60
REJECT_AFTER_MESSAGES: Final = 2**64 - 2**13 - 1
REKEY_AFTER_TIME: Final = 120.0
REJECT_AFTER_TIME: Final = 180.0
REKEY_ATTEMPT_TIME: Final = 90.0
REKEY_TIMEOUT: Final = 5.0
REKEY_TIMEOUT_JITTER_MAX: Final = 0.334  # wireguard-go: rand in [0, 334 ms)
KEEPALIVE_TIMEOUT: Final = 10.0
COOKIE_REFRESH_TIME: Final = 120.0  # §6.1: cookie secret / received cookie lifetime
MAX_TIMER_HANDSHAKES: Final = int(REKEY_ATTEMPT_TIME / REKEY_TIMEOUT)  # 18 retries
NEW_HANDSHAKE_TIMEOUT: Final = KEEPALIVE_TIMEOUT + REKEY_TIMEOUT  # 15 s, §6.5
RECEIVE_REKEY_AGE: Final = REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT  # 165 s, §6.2
ZERO_KEYS_AFTER: Final = REJECT_AFTER_TIME * 3  # 540 s, §6.3

# --- Replay window (wireguard-go replay/replay.go, RFC 6479) ----------------------
REPLAY_BLOCK_BITS: Final = 64
REPLAY_RING_BLOCKS: Final = 128
REPLAY_WINDOW_SIZE: Final = (REPLAY_RING_BLOCKS - 1) * REPLAY_BLOCK_BITS  # 8128

# --- Denial-of-service protection (wireguard-go device/constants.go, ratelimiter) -
HANDSHAKE_INITIATION_RATE: Final = 1.0 / 50  # per peer: at most 50 initiations/s
RATELIMIT_PACKETS_PER_SECOND: Final = 20  # per source IP, under load
RATELIMIT_BURST: Final = 5
RATELIMIT_GC_INTERVAL: Final = 1.0

# --- Queues ------------------------------------------------------------------------
MAX_STAGED_PACKETS: Final = 128  # wireguard-go QueueStagedSize

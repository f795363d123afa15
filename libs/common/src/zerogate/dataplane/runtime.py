"""What the client and the gateway agents share: keys, the tunnel, the node, the link.

An :class:`AgentRuntime` owns an ephemeral WireGuard key pair (a new one each
start, as Firezone's agents do), the :class:`~zerogate.common.agentlink.SignalingLink`,
and, once signaling sent ``init``, the TUN interface (:class:`WireGuardInterface`)
and the :class:`~zerogate.dataplane.node.Node` that connects it to peers.
Candidates the node finds are trickled through the link; frames that cannot
be sent while the link is down wait in a small outbox and go after the next
``init``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import logging
import time
from collections import deque
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from zerogate.common.agentlink import SignalingLink
from zerogate.common.messages.signaling import (
    BroadcastIceCandidates,
    BroadcastInvalidatedIceCandidates,
    InterfaceConfig,
    RelayInfo,
    RelaysPresence,
    Traced,
)
from zerogate.dataplane.interface import WireGuardInterface
from zerogate.dataplane.node import Node, NodeEvent
from zerogate.dataplane.uapi import SOCKET_DIR
from zerogate.dataplane.wgconfig import InterfaceConfig as WgInterfaceConfig

log = logging.getLogger(__name__)

#: The tunnel's MTU (Firezone's: it fits inside 1360-byte paths with headroom for TURN).
TUNNEL_MTU = 1280
#: Frames kept while the link is down (oldest dropped).
OUTBOX_SIZE = 256
#: Seconds an outbox frame stays worth sending.
OUTBOX_TTL = 30.0


def generate_keypair() -> tuple[bytes, bytes]:
    """A fresh Curve25519 (private, public) key pair, 32 bytes each."""
    private = X25519PrivateKey.generate()
    raw = private.private_bytes_raw()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return raw, public


class AgentRuntime:
    """The tunnel side of an agent; the client and gateway agents build on it."""

    kind: Literal["client", "gateway"]
    controlling: bool

    def __init__(self, *, interface_name: str, uapi: bool = True) -> None:
        self.interface_name = interface_name
        self.private_key, self.public_key = generate_keypair()
        self.public_key_b64 = base64.b64encode(self.public_key).decode()
        self.iface: WireGuardInterface | None = None
        self.node: Node | None = None
        self.link: SignalingLink | None = None
        self.interface: InterfaceConfig | None = None
        self._uapi = uapi
        self._outbox: deque[tuple[float, Traced]] = deque(maxlen=OUTBOX_SIZE)
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- tunnel ------------------------------------------------------------------
    async def ensure_tunnel(
        self,
        interface: InterfaceConfig,
        routes: Sequence[Any],
        *,
        addresses: Sequence[str] = (),
        fwmark: int | None = None,
    ) -> bool:
        """Bring the TUN and node up on the first ``init``; True when they were created now.

        ``addresses`` are more host addresses for the TUN after the tunnel
        addresses (the client's stub resolver listens on its own); ``fwmark``
        marks the agent's UDP socket (SO_MARK), so policy routing can keep
        its datagrams out of the tunnel.
        """
        self.interface = interface
        if self.iface is not None:
            return False
        extra = tuple(
            ipaddress.ip_interface(f"{a}/{32 if ipaddress.ip_address(a).version == 4 else 128}")
            for a in addresses
        )
        config = WgInterfaceConfig(
            name=self.interface_name,
            private_key=self.private_key,
            addresses=(
                ipaddress.ip_interface(f"{interface.ipv4}/32"),
                ipaddress.ip_interface(f"{interface.ipv6}/128"),
                *extra,
            ),
            listen_port=0,
            fwmark=fwmark,
            mtu=TUNNEL_MTU,
        )
        iface = WireGuardInterface(config, uapi_dir=SOCKET_DIR if self._uapi else None)
        await iface.start()
        self.iface = iface
        if routes:
            await self.update_routes(add=routes)
        self.node = Node(
            iface,
            controlling=self.controlling,
            on_candidates=self._trickle,
            on_invalidated=self._invalidate,
            on_event=self.on_node_event,
        )
        log.info(
            "tunnel up",
            extra={"interface": self.interface_name, "listen_port": self.node.port},
        )
        return True

    async def update_routes(
        self,
        *,
        add: Sequence[Any] = (),
        remove: Sequence[Any] = (),
        sources: Mapping[int, str] | None = None,
    ) -> None:
        if self.iface is None or self.iface.tun is None or not (add or remove):
            return
        tun = self.iface.tun
        await asyncio.to_thread(
            tun.update_routes, add=list(add), remove=list(remove), sources=sources
        )

    async def close_tunnel(self) -> None:
        if self.node is not None:
            self.node.close()
            self.node = None
        if self.iface is not None:
            await self.iface.close()
            self.iface = None

    def on_node_event(self, event: NodeEvent) -> None:
        """A connection changed path or was lost (the agents override this)."""
        del event

    # -- relays ------------------------------------------------------------------
    def apply_relays(self, presence: RelaysPresence | Sequence[RelayInfo]) -> None:
        if self.node is None:
            return
        if isinstance(presence, RelaysPresence):
            for relay_id in presence.disconnected_ids:
                self.node.drop_relay(relay_id)
            keep = [
                r for rid, r in self.node.relays.items() if rid not in presence.disconnected_ids
            ]
            fresh = {r.id: r for r in keep}
            fresh.update({r.id: r for r in presence.connected})
            self.node.set_relays(list(fresh.values()))
        else:
            self.node.set_relays(list(presence))

    # -- signaling ---------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def post(self, frame: Traced) -> None:
        """Send a frame to signaling soon; kept for a while if the link is down."""
        self.spawn(self._post(frame))

    async def _post(self, frame: Traced) -> None:
        if self.link is None or not await self.link.send(frame):
            self._outbox.append((time.monotonic(), frame))

    async def flush_outbox(self) -> None:
        now = time.monotonic()
        pending = [f for t, f in self._outbox if now - t < OUTBOX_TTL]
        self._outbox.clear()
        for frame in pending:
            await self._post(frame)

    def _trickle(self, peer_id: str, lines: list[str]) -> None:
        self.post(BroadcastIceCandidates(peer_ids=[peer_id], candidates=lines))

    def _invalidate(self, peer_id: str, lines: list[str]) -> None:
        self.post(BroadcastInvalidatedIceCandidates(peer_ids=[peer_id], candidates=lines))

    async def stop(self) -> None:
        if self.link is not None:
            await self.link.stop()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.close_tunnel()

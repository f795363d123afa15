"""Helper process for test_interface_netns: an interface whose one peer uses its own path.

    python path_peer.py CONFIG PEER_ENDPOINT

Brings the interface of CONFIG up like ``zerogate-wg up`` would, then gives its
first peer a :class:`SeparateSocketPath`: datagrams for that peer leave from a
socket of their own (another port), standing in for an ICE pair or a TURN
channel, and what that socket receives is fed back with ``receive``. The
core knows the peer by a made-up endpoint (TEST-NET-1, RFC 5737). SIGUSR1
puts the peer back on the shared socket (at PEER_ENDPOINT). Runs until SIGTERM;
prints ``path-port <N>`` once ready and ``shared`` after SIGUSR1.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys

from zerogate.dataplane.interface import WireGuardInterface
from zerogate.dataplane.wgconfig import load_config

PATH_ENDPOINT = ("192.0.2.99", 4242)  # RFC 5737 TEST-NET-1: never a real address


class SeparateSocketPath:
    def __init__(self, real_peer: tuple[str, int]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("0.0.0.0", 0))
        self.sock.setblocking(False)
        self.real_peer = real_peer
        self.sent = 0

    @property
    def endpoint(self) -> tuple[str, int]:
        return PATH_ENDPOINT

    def send(self, data: bytes) -> None:
        self.sent += 1
        self.sock.sendto(data, self.real_peer)


async def main() -> None:
    config = load_config(sys.argv[1])
    host, _, port = sys.argv[2].rpartition(":")
    interface = WireGuardInterface(config)
    await interface.start()
    path = SeparateSocketPath((host, int(port)))
    loop = asyncio.get_running_loop()

    def on_readable() -> None:
        while True:
            try:
                data = path.sock.recv(65536)
            except BlockingIOError:
                return
            interface.receive(data, path.endpoint)

    loop.add_reader(path.sock.fileno(), on_readable)
    interface.set_peer_path(config.peers[0].public_key, path)
    print(f"path-port {path.sock.getsockname()[1]}", flush=True)

    def back_to_shared() -> None:
        interface.set_peer_path(config.peers[0].public_key, None, endpoint=path.real_peer)
        print("shared", flush=True)

    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, back_to_shared)
    await stop.wait()
    loop.remove_reader(path.sock.fileno())
    await interface.close()


if __name__ == "__main__":
    asyncio.run(main())

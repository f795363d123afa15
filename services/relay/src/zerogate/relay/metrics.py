"""The relay's metrics, rendered in the Prometheus text format for ``/metrics``.

Names follow prometheus.io naming (``_total`` for counters, ``_bytes`` for
sizes) under the ``zerogate_relay_`` namespace; they mirror the OTel names
``relay.allocations.active``, ``relay.packets`` and so on. Everything is read
from the shell's counters and the core's :class:`~zerogate.proto.turn.Stats` at
scrape time: the packet path only adds integers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from zerogate.proto.turn import Stats
from zerogate.relay.shell import Counters

PREFIX: Final = "zerogate_relay"


def _family(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]) -> str:
    lines = [f"# HELP {PREFIX}_{name} {help_text}", f"# TYPE {PREFIX}_{name} {kind}"]
    lines.extend(f"{PREFIX}_{name}{labels} {value:g}" for labels, value in samples)
    return "\n".join(lines)


def render(
    stats: Stats,
    counters: Counters,
    *,
    relay_sockets: int,
    bus_connected: bool | None,
    heartbeats_sent: int,
) -> str:
    """The whole ``/metrics`` page."""
    out = [
        _family("allocations", "gauge", "Active TURN allocations.", [("", stats.allocations)]),
        _family("permissions", "gauge", "Installed permissions.", [("", stats.permissions)]),
        _family("channels", "gauge", "Bound channels.", [("", stats.channels)]),
        _family("relay_sockets", "gauge", "Open relay sockets.", [("", relay_sockets)]),
        _family(
            "relayed_packets_total",
            "counter",
            "Datagrams relayed, by direction.",
            [
                ('{direction="to_peer"}', counters.to_peer_packets),
                ('{direction="to_client"}', counters.to_client_packets),
            ],
        ),
        _family(
            "relayed_bytes_total",
            "counter",
            "Bytes relayed, by direction (application data; indications counted whole).",
            [
                ('{direction="to_peer"}', counters.to_peer_bytes),
                ('{direction="to_client"}', counters.to_client_bytes),
            ],
        ),
        _family(
            "received_datagrams_total",
            "counter",
            "Datagrams received, by socket.",
            [
                ('{socket="listen"}', counters.client_datagrams),
                ('{socket="relay"}', counters.peer_datagrams),
            ],
        ),
        _family(
            "responses_total",
            "counter",
            "STUN/TURN responses sent, by code (200 = success).",
            [(f'{{code="{code}"}}', n) for code, n in sorted(stats.responses_by_code.items())],
        ),
        _family(
            "dropped_datagrams_total",
            "counter",
            "Datagrams dropped (garbage, no permission, unknown channel).",
            [("", stats.dropped + counters.fast_path_drops)],
        ),
        _family(
            "send_errors_total",
            "counter",
            "Datagrams the kernel refused to send or receive.",
            [("", counters.send_errors)],
        ),
        _family(
            "relay_bind_failures_total",
            "counter",
            "Relay ports that could not be bound.",
            [("", counters.relay_bind_failures)],
        ),
        _family(
            "gso_sends_total",
            "counter",
            "System calls that sent several datagrams at once (UDP GSO).",
            [("", counters.gso_sends)],
        ),
        _family(
            "heartbeats_sent_total", "counter", "Heartbeats published.", [("", heartbeats_sent)]
        ),
    ]
    if bus_connected is not None:
        out.append(
            _family("bus_connected", "gauge", "1 while connected to NATS.", [("", bus_connected)])
        )
    return "\n".join(out) + "\n"

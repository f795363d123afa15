"""Signaling's metrics (OpenTelemetry names and units)."""

from __future__ import annotations

from opentelemetry import metrics

_meter = metrics.get_meter("zerogate.signaling")

#: Agent sessions held by this instance, by kind.
sessions = _meter.create_up_down_counter(
    "signaling.sessions.active", unit="{session}", description="agent sessions held"
)
#: Connections closed before they became sessions, by kind and close code.
refused = _meter.create_counter(
    "signaling.sessions.refused", unit="{session}", description="connections refused"
)
frames_received = _meter.create_counter(
    "signaling.frames.received", unit="{frame}", description="frames from agents"
)
frames_sent = _meter.create_counter(
    "signaling.frames.sent", unit="{frame}", description="frames to agents"
)
#: Authorizations ended because a change made them no longer allowed.
revocations = _meter.create_counter(
    "signaling.authorizations.revoked", unit="{authorization}", description="access revoked"
)

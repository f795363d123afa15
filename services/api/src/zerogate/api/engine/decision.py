"""The policy decision: default deny, the conforming policy with the latest expiry wins.

The caller passes the policies that could grant the actor access to one resource
(those of the actor's groups, the implicit Everyone group included) and the
client's context. :func:`decide` is pure and cheap: no I/O, no clock, conditions
parsed beforehand, time windows materialised once per day and cached.

Rules:

* disabled policies are ignored; with no enabled policy the answer is
  ``Deny(())``;
* a policy conforms when every one of its conditions holds (no conditions: it
  always conforms and sets no expiry);
* among conforming policies the one whose access lasts longest wins: no expiry
  beats every expiry, otherwise the latest ``expires_at``; ties go to the
  smallest policy id, so the answer does not depend on the order of input;
* ``Allow.expires_at`` is the earliest end among the winner's time conditions,
  capped by ``token_expires_at`` (``None`` only when both are absent). The engine
  does not judge the token: an already expired token yields an ``expires_at`` in
  the past, which the caller must treat as no access;
* ``Deny.violated_properties`` are the properties whose conditions failed in any
  enabled policy, sorted and unique.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from zerogate.api.engine.conditions import Condition
from zerogate.api.engine.context import DecisionContext
from zerogate.api.engine.errors import EngineValidationError

__all__ = ["Allow", "DecisionContext", "Deny", "PolicyInput", "decide"]


@dataclass(frozen=True, slots=True)
class PolicyInput:
    """One policy as the engine sees it: id, parsed conditions, disabled flag."""

    id: str
    conditions: tuple[Condition, ...] = ()
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class Allow:
    """Access granted by ``policy_id`` until ``expires_at`` (UTC; ``None``: no expiry)."""

    policy_id: str
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class Deny:
    """No policy conforms; ``violated_properties`` says which conditions failed."""

    violated_properties: tuple[str, ...]


def _lasts_longer(
    expires: datetime | None, policy_id: str, best_expires: datetime | None, best_id: str
) -> bool:
    if expires == best_expires:
        return policy_id < best_id
    if expires is None:
        return True
    if best_expires is None:
        return False
    return expires > best_expires


def decide(
    policies: Iterable[PolicyInput],
    context: DecisionContext,
    token_expires_at: datetime | None,
) -> Allow | Deny:
    """Decide whether ``context`` may use the resource these ``policies`` guard."""
    if token_expires_at is not None and token_expires_at.utcoffset() is None:
        raise EngineValidationError("token_expires_at must be timezone-aware")
    violated: set[str] = set()
    best: PolicyInput | None = None
    best_expires: datetime | None = None
    for policy in policies:
        if policy.disabled:
            continue
        conforms = True
        expires: datetime | None = None
        for condition in policy.conditions:
            holds, until = condition.evaluate(context)
            if not holds:
                conforms = False
                violated.add(condition.property)
            elif until is not None and (expires is None or until < expires):
                expires = until
        if not conforms:
            continue
        if best is None or _lasts_longer(expires, policy.id, best_expires, best.id):
            best, best_expires = policy, expires
    if best is None:
        return Deny(tuple(sorted(violated)))
    if token_expires_at is not None:
        token_expires = token_expires_at.astimezone(UTC)
        if best_expires is None or token_expires < best_expires:
            best_expires = token_expires
    return Allow(best.id, best_expires)

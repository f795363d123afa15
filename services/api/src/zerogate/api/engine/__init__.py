"""The pure policy engine of the api: resource addresses, conditions, decisions.

No I/O, no asyncio, no clock: everything, time included, comes in as arguments.

* :mod:`.addresses` — resource address validation/normalisation, DNS wildcard
  patterns, :class:`~.addresses.ResourceMatcher`, traffic filters;
* :mod:`.conditions` — policy conditions, parsed once;
* :mod:`.timewindows` — weekly windows in IANA zones (DST-correct);
* :mod:`.decision` — :func:`~.decision.decide`;
* :mod:`.errors` — :class:`~.errors.EngineValidationError` (a ``ValueError``).
"""

from zerogate.api.engine.errors import EngineError, EngineValidationError

__all__ = ["EngineError", "EngineValidationError"]

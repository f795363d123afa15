"""Errors of the policy engine.

::

    EngineError                     base of everything this package raises on purpose
     └── EngineValidationError      (also a ValueError) bad resource address, filter,
                                    condition, or a naive datetime handed to ``decide``

Every function of the engine that parses user input answers bad input with
:class:`EngineValidationError` and nothing else. It subclasses ``ValueError`` so
callers (the REST layer) may catch ``ValueError``; its message is meant for the
person who typed the input and never echoes more than the offending fragment.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of the engine's errors."""


class EngineValidationError(EngineError, ValueError):
    """Input (address, filter, condition, context) is not acceptable."""


def show_input(value: object, limit: int = 64) -> str:
    """``repr`` of user input, cut short so an error never echoes a whole payload."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."

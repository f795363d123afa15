"""Policy conditions: parsed once, evaluated on every decision.

A condition is ``{"property": ..., "operator": ..., "values": [...]}``; a policy
has at most one per property. Properties and operators:

``remote_ip``: ``is_in_cidr`` / ``is_not_in_cidr``
    values are CIDRs or addresses (host bits cleared). An unknown remote IP
    fails both operators (fail closed).
``remote_country``: ``is_in`` / ``is_not_in``
    values are ISO 3166-1 alpha-2 codes (upper-cased, validated). An unknown
    country (``None``, or not an ISO code) fails both operators (fail closed).
``client_verified``: ``is``
    values must be ``["true"]``; holds when the client device is verified.
``current_time``: ``is_in_day_of_week_time_ranges``
    values are weekly windows ``DAYS/RANGES/ZONE`` (see
    :mod:`zerogate.api.engine.timewindows`), several values are OR-ed. It holds
    inside a window and makes the authorization expire at the end of it.

:func:`parse_conditions` answers every malformed input with
:class:`~zerogate.api.engine.errors.EngineValidationError` (a ``ValueError``);
:meth:`Condition.as_dict` gives the normalised form to store, which parses back
to an equal condition.
"""

from __future__ import annotations

import abc
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import pycountry

from zerogate.api.engine.addresses import parse_network
from zerogate.api.engine.context import DecisionContext
from zerogate.api.engine.errors import EngineValidationError
from zerogate.api.engine.errors import show_input as _show
from zerogate.api.engine.timewindows import WeeklyWindows, parse_time_window

__all__ = [
    "OPERATORS",
    "ClientVerifiedCondition",
    "Condition",
    "CurrentTimeCondition",
    "Outcome",
    "RemoteCountryCondition",
    "RemoteIpCondition",
    "parse_condition",
    "parse_conditions",
]

REMOTE_IP: Final = "remote_ip"
REMOTE_COUNTRY: Final = "remote_country"
CLIENT_VERIFIED: Final = "client_verified"
CURRENT_TIME: Final = "current_time"

OPERATORS: Final[Mapping[str, tuple[str, ...]]] = {
    REMOTE_IP: ("is_in_cidr", "is_not_in_cidr"),
    REMOTE_COUNTRY: ("is_in", "is_not_in"),
    CLIENT_VERIFIED: ("is",),
    CURRENT_TIME: ("is_in_day_of_week_time_ranges",),
}
MAX_VALUES: Final = 1000
MAX_TIME_WINDOWS: Final = 64  # each value is materialised per day; keep that bounded

COUNTRY_CODES: Final = frozenset(country.alpha_2 for country in pycountry.countries)

# (holds, expires_at): expires_at None means the condition sets no expiry.
Outcome = tuple[bool, datetime | None]
_PASS: Final[Outcome] = (True, None)
_FAIL: Final[Outcome] = (False, None)


@dataclass(frozen=True, slots=True)
class Condition(abc.ABC):
    """A parsed condition. Build with :func:`parse_condition`; compare by value."""

    property: str
    operator: str
    values: tuple[str, ...]

    @abc.abstractmethod
    def evaluate(self, context: DecisionContext) -> Outcome:
        """Whether the condition holds for ``context``, and until when."""

    def as_dict(self) -> dict[str, object]:
        return {"property": self.property, "operator": self.operator, "values": list(self.values)}


@dataclass(frozen=True, slots=True)
class RemoteIpCondition(Condition):
    _negate: bool = field(init=False, repr=False, compare=False)
    _v4: tuple[tuple[int, int], ...] = field(init=False, repr=False, compare=False)
    _v6: tuple[tuple[int, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        v4: list[tuple[int, int]] = []
        v6: list[tuple[int, int]] = []
        for value in self.values:
            network = ipaddress.ip_network(value)
            target = v4 if network.version == 4 else v6
            target.append((int(network.network_address), int(network.netmask)))
        object.__setattr__(self, "_negate", self.operator == "is_not_in_cidr")
        object.__setattr__(self, "_v4", tuple(v4))
        object.__setattr__(self, "_v6", tuple(v6))

    def evaluate(self, context: DecisionContext) -> Outcome:
        ip = context.remote_ip
        if ip is None:
            return _FAIL
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        value = int(ip)
        networks = self._v4 if ip.version == 4 else self._v6
        inside = any(value & mask == net for net, mask in networks)
        return _PASS if inside != self._negate else _FAIL


@dataclass(frozen=True, slots=True)
class RemoteCountryCondition(Condition):
    _negate: bool = field(init=False, repr=False, compare=False)
    _codes: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_negate", self.operator == "is_not_in")
        object.__setattr__(self, "_codes", frozenset(self.values))

    def evaluate(self, context: DecisionContext) -> Outcome:
        country = context.country
        if country is None:
            return _FAIL
        country = country.strip().upper()
        if country not in COUNTRY_CODES:
            return _FAIL
        inside = country in self._codes
        return _PASS if inside != self._negate else _FAIL


@dataclass(frozen=True, slots=True)
class ClientVerifiedCondition(Condition):
    def evaluate(self, context: DecisionContext) -> Outcome:
        return _PASS if context.client_verified else _FAIL


@dataclass(frozen=True, slots=True)
class CurrentTimeCondition(Condition):
    _windows: WeeklyWindows = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        windows = WeeklyWindows([parse_time_window(value) for value in self.values])
        object.__setattr__(self, "_windows", windows)

    def evaluate(self, context: DecisionContext) -> Outcome:
        end = self._windows.current_end(context.time)
        return _FAIL if end is None else (True, end)


def _unique(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _normalise_values(prop: str, raw: list[str]) -> tuple[str, ...]:
    if prop == REMOTE_IP:
        out = []
        for value in raw:
            try:
                out.append(parse_network(value.strip()).with_prefixlen)
            except EngineValidationError as exc:
                raise EngineValidationError(f"remote_ip: {exc}") from None
        return _unique(out)
    if prop == REMOTE_COUNTRY:
        codes = [value.strip().upper() for value in raw]
        for code in codes:
            if code not in COUNTRY_CODES:
                raise EngineValidationError(
                    f"remote_country: {_show(code, 12)} is not an ISO 3166-1 alpha-2 country code"
                )
        return _unique(codes)
    if prop == CLIENT_VERIFIED:
        if [value.strip().lower() for value in raw] != ["true"]:
            raise EngineValidationError('client_verified takes exactly ["true"]')
        return ("true",)
    return _unique([parse_time_window(value).text() for value in raw])


_CLASSES: Final[Mapping[str, type[Condition]]] = {
    REMOTE_IP: RemoteIpCondition,
    REMOTE_COUNTRY: RemoteCountryCondition,
    CLIENT_VERIFIED: ClientVerifiedCondition,
    CURRENT_TIME: CurrentTimeCondition,
}


def parse_condition(raw: object) -> Condition:
    """Parse one ``{"property", "operator", "values"}`` object."""
    if not isinstance(raw, Mapping):
        raise EngineValidationError("a condition must be an object")
    keys = set(raw)
    if keys != {"property", "operator", "values"}:
        missing = sorted({"property", "operator", "values"} - keys)
        extra = sorted(map(str, keys - {"property", "operator", "values"}))
        raise EngineValidationError(
            f"a condition has property, operator and values (missing {missing}, unknown {extra})"
        )
    prop, operator, values = raw["property"], raw["operator"], raw["values"]
    if not isinstance(prop, str) or prop not in OPERATORS:
        raise EngineValidationError(
            f"unknown condition property {_show(prop, 40)}; expected one of {sorted(OPERATORS)}"
        )
    if not isinstance(operator, str) or operator not in OPERATORS[prop]:
        raise EngineValidationError(
            f"operator {_show(operator, 40)} does not apply to {prop}; "
            f"expected one of {list(OPERATORS[prop])}"
        )
    if not isinstance(values, list | tuple) or not values:
        raise EngineValidationError(f"{prop} needs a non-empty list of values")
    if len(values) > MAX_VALUES:
        raise EngineValidationError(f"{prop} takes at most {MAX_VALUES} values")
    if prop == CURRENT_TIME and len(values) > MAX_TIME_WINDOWS:
        raise EngineValidationError(f"{prop} takes at most {MAX_TIME_WINDOWS} values")
    if not all(isinstance(value, str) for value in values):
        raise EngineValidationError(f"{prop} values must be strings")
    return _CLASSES[prop](prop, operator, _normalise_values(prop, list(values)))


def parse_conditions(raw: object) -> tuple[Condition, ...]:
    """Parse a policy's conditions; at most one per property."""
    if not isinstance(raw, list | tuple):
        raise EngineValidationError("conditions must be a list")
    parsed = tuple(parse_condition(item) for item in raw)
    seen: set[str] = set()
    for condition in parsed:
        if condition.property in seen:
            raise EngineValidationError(f"more than one condition on {condition.property}")
        seen.add(condition.property)
    return parsed

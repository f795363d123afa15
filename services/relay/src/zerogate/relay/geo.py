"""Where an IP address is on Earth, and how far apart two places are.

Sources, best first (:meth:`Geolocator.locate`):

1. A :class:`Location` the caller already has (a load balancer's geo headers,
   see :func:`location_from_headers`) overrides any lookup.
2. A MaxMind-format city database (GeoLite2-City, GeoIP2-City, DB-IP City Lite
   in mmdb form) named by ``ZG_GEOIP_DB``: ``location.latitude/longitude`` and
   ``country.iso_code`` of the record.
3. Offline, country level: the ``geoip2fast`` package ships an IPv4+IPv6 →
   country table in its wheel; the country becomes its centre from
   ``data/country_centroids.csv``. Coarse (a whole country is one point) but it
   still orders continents right, which is what relay choice needs.

Addresses that are not globally routable (private, loopback, link-local,
CGNAT 100.64/10, documentation, multicast, unspecified, reserved; IPv4-mapped
IPv6 is unwrapped first) have no location. Lookups are a few microseconds;
they run per agent connection, never per packet.

Distance is great-circle (haversine) on a sphere of radius 6371 km, the mean
Earth radius (IUGG), as Firezone's portal does.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import logging
import math
import os
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import maxminddb

from zerogate.common.errors import ConfigError

__all__ = [
    "EARTH_RADIUS_KM",
    "GEOIP_DB_ENV",
    "Geolocator",
    "Location",
    "country_centroid",
    "haversine_km",
    "is_locatable",
    "location_from_headers",
]

log = logging.getLogger(__name__)

#: Mean Earth radius in km (IUGG), the radius haversine distances use.
EARTH_RADIUS_KM: Final = 6371.0
#: Environment variable naming a MaxMind-format city database.
GEOIP_DB_ENV: Final = "ZG_GEOIP_DB"

Source = Literal["given", "city", "country"]


@dataclass(frozen=True, slots=True)
class Location:
    """A point in WGS 84 degrees, the country (ISO 3166-1 alpha-2) if known."""

    lat: float
    lon: float
    country: str | None = None
    #: How it was found: given by the caller, a city database, or a country centre.
    source: Source = "given"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lat) and -90.0 <= self.lat <= 90.0):
            raise ValueError(f"latitude {self.lat} out of range")
        if not (math.isfinite(self.lon) and -180.0 <= self.lon <= 180.0):
            raise ValueError(f"longitude {self.lon} out of range")


def haversine_km(a: Location, b: Location) -> float:
    """Great-circle distance in km between two points."""
    phi1, phi2 = math.radians(a.lat), math.radians(b.lat)
    dphi = phi2 - phi1
    dlmb = math.radians(b.lon - a.lon)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


# --- country centroids -------------------------------------------------------

_CENTROIDS: dict[str, tuple[float, float]] | None = None


def _load_centroids() -> dict[str, tuple[float, float]]:
    text = resources.files(__package__).joinpath("data/country_centroids.csv").read_text("utf-8")
    rows = (line for line in io.StringIO(text) if not line.startswith("#"))
    table: dict[str, tuple[float, float]] = {}
    for row in csv.DictReader(rows):
        table[row["code"]] = (float(row["lat"]), float(row["lon"]))
    return table


def country_centroid(code: str) -> Location | None:
    """The centre of a country by ISO 3166-1 alpha-2 code, ``None`` if unknown."""
    global _CENTROIDS
    if _CENTROIDS is None:
        _CENTROIDS = _load_centroids()
    point = _CENTROIDS.get(code.upper())
    if point is None:
        return None
    return Location(lat=point[0], lon=point[1], country=code.upper(), source="country")


# --- IP addresses ------------------------------------------------------------

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse(ip: str | IPAddress) -> IPAddress | None:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr


def is_locatable(ip: str | IPAddress) -> bool:
    """Whether an address is globally routable, so that looking it up makes sense."""
    addr = _parse(ip)
    return addr is not None and addr.is_global and not addr.is_multicast


class _CountryLookup(Protocol):
    def __call__(self, ip: str) -> str | None: ...


_FAST_LOCK = threading.Lock()
_FAST: Any = None


def _geoip2fast_country(ip: str) -> str | None:
    """Country code from geoip2fast's bundled table (loaded once, ~0.2 s)."""
    global _FAST
    if _FAST is None:
        with _FAST_LOCK:
            if _FAST is None:
                # The package has regex literals with invalid escapes; compiling
                # it must not trip a warnings-as-errors filter.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    from geoip2fast import GeoIP2Fast  # type: ignore[import-untyped]

                    _FAST = GeoIP2Fast(geoip2fast_data_file="geoip2fast-ipv6.dat.gz")
    result = _FAST.lookup(ip)
    code = getattr(result, "country_code", "")
    if isinstance(code, str) and len(code) == 2 and code.isalpha():
        return code.upper()
    return None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


class Geolocator:
    """Locate IPs with a city database if one is configured, else by country.

    ``city_db`` is a path to a MaxMind-format database; ``country_fallback``
    turns the offline country lookup on (default) or off. Build one per
    process and reuse it; :meth:`close` releases the database.
    """

    def __init__(
        self, city_db: str | os.PathLike[str] | None = None, *, country_fallback: bool = True
    ) -> None:
        self._reader: maxminddb.Reader | None = None
        if city_db is not None:
            path = Path(city_db)
            try:
                self._reader = maxminddb.open_database(str(path))
            except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
                raise ConfigError(
                    f"{GEOIP_DB_ENV}: cannot open MaxMind database {path.name}: {exc}"
                ) from exc
        self._country: _CountryLookup | None = _geoip2fast_country if country_fallback else None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Geolocator:
        """``ZG_GEOIP_DB`` if set and non-empty, else country level only."""
        env = os.environ if environ is None else environ
        return cls(env.get(GEOIP_DB_ENV) or None)

    @property
    def has_city_db(self) -> bool:
        return self._reader is not None

    def warm_up(self) -> None:
        """Load the offline country table now rather than on the first lookup."""
        if self._country is not None:
            self._country("8.8.8.8")

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def locate(
        self, ip: str | IPAddress | None, *, given: Location | None = None
    ) -> Location | None:
        """Where ``ip`` is; ``given`` (e.g. from headers) wins; ``None`` when unknown."""
        if given is not None:
            return given
        if ip is None:
            return None
        addr = _parse(ip)
        if addr is None or not addr.is_global or addr.is_multicast:
            return None
        country: str | None = None
        if self._reader is not None:
            found = self._lookup_city(addr)
            if isinstance(found, Location):
                return found
            country = found
        if country is None and self._country is not None:
            try:
                country = self._country(str(addr))
            except Exception:  # a broken third-party table must not fail a request
                log.debug("country lookup failed", exc_info=True)
                country = None
        return country_centroid(country) if country else None

    def _lookup_city(self, addr: IPAddress) -> Location | str | None:
        """A located record, else its country code, else ``None``."""
        assert self._reader is not None
        try:
            record = self._reader.get(addr)
        except (ValueError, maxminddb.InvalidDatabaseError):
            log.debug("city database lookup failed", exc_info=True)
            return None
        if not isinstance(record, dict):
            return None
        country = _country_of(record)
        loc = record.get("location")
        if isinstance(loc, dict):
            lat, lon = _float(loc.get("latitude")), _float(loc.get("longitude"))
            if lat is not None and lon is not None:
                try:
                    return Location(lat=lat, lon=lon, country=country, source="city")
                except ValueError:
                    log.debug("city database has an out-of-range location")
        return country


def _country_of(record: dict[str, Any]) -> str | None:
    for key in ("country", "registered_country"):
        part = record.get(key)
        if isinstance(part, dict):
            code = part.get("iso_code")
            if isinstance(code, str) and len(code) == 2 and code.isalpha():
                return code.upper()
    return None


# --- load balancer headers ---------------------------------------------------

#: (latitude header, longitude header) pairs, first present pair wins.
_LAT_LON_HEADERS: Final = (
    ("cloudfront-viewer-latitude", "cloudfront-viewer-longitude"),
    ("x-geo-latitude", "x-geo-longitude"),
    ("x-client-latitude", "x-client-longitude"),
)
#: Headers carrying "lat,lon" in one value (Google Cloud load balancers).
_COORDINATE_HEADERS: Final = ("x-geo-location-coordinates", "x-client-geo-location")
#: Headers carrying an ISO 3166-1 alpha-2 country code.
_COUNTRY_HEADERS: Final = (
    "cloudfront-viewer-country",
    "cf-ipcountry",
    "x-geo-country",
    "x-azure-geo-country",
    "x-client-region",
)


def _header_float(value: str | None) -> float | None:
    if value is None or len(value) > 32:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def location_from_headers(headers: Mapping[str, str]) -> Location | None:
    """A location from a trusted load balancer's geo headers, if it sent any.

    Understands CloudFront (``CloudFront-Viewer-Latitude``/``-Longitude``/
    ``-Country``), Cloudflare (``CF-IPCountry``), Google Cloud
    (``X-Geo-Location-Coordinates: lat,lon``, ``X-Client-Region``), Azure
    (``X-Azure-Geo-Country``) and plain ``X-Geo-Latitude``/``-Longitude``/
    ``-Country``. Only call this for requests that came through a proxy you
    trust to set them: a client can send any header. Malformed values are
    ignored.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    country: str | None = None
    for name in _COUNTRY_HEADERS:
        code = lowered.get(name, "").strip()
        if len(code) == 2 and code.isascii() and code.isalpha():
            country = code.upper()
            break
    pairs: list[tuple[str | None, str | None]] = [
        (lowered.get(lat), lowered.get(lon)) for lat, lon in _LAT_LON_HEADERS
    ]
    for name in _COORDINATE_HEADERS:
        both = lowered.get(name)
        if both is not None and both.count(",") == 1:
            first, second = both.split(",")
            pairs.append((first, second))
    for lat_text, lon_text in pairs:
        lat, lon = _header_float(lat_text), _header_float(lon_text)
        if lat is None or lon is None:
            continue
        try:
            return Location(lat=lat, lon=lon, country=country, source="given")
        except ValueError:
            continue
    if country is not None:
        centre = country_centroid(country)
        if centre is not None:
            return centre
    return None

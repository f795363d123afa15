"""IP geolocation: a test MaxMind city database, the offline country fallback, headers."""

from __future__ import annotations

import math
from pathlib import Path

import pycountry
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from zerogate.common.errors import ConfigError
from zerogate.relay.geo import (
    GEOIP_DB_ENV,
    Geolocator,
    Location,
    country_centroid,
    haversine_km,
    is_locatable,
    location_from_headers,
)

# Mean Earth radius (IUGG), restated from the spec of the task.
R_KM = 6371.0

BERLIN = Location(52.52, 13.40)
FRANKFURT = Location(50.11, 8.68)
NEW_YORK = Location(40.71, -74.01)
VIRGINIA = Location(38.95, -77.45)


@pytest.fixture(scope="module")
def city_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small GeoLite2-City-shaped database (records as MaxMind lays them out)."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City")
    writer.insert_network(
        IPSet(["81.169.0.0/16"]),
        {
            "city": {"names": {"en": "Berlin"}},
            "country": {"iso_code": "DE", "names": {"en": "Germany"}},
            "location": {"latitude": 52.52, "longitude": 13.40, "accuracy_radius": 20},
        },
    )
    writer.insert_network(
        IPSet(["2a01:4f8::/32"]),
        {
            "country": {"iso_code": "DE"},
            "location": {"latitude": 50.11, "longitude": 8.68},
        },
    )
    # Only a country, no coordinates: falls back to the country's centre.
    writer.insert_network(IPSet(["41.0.0.0/11"]), {"country": {"iso_code": "ZA"}})
    # Only the registered country.
    writer.insert_network(IPSet(["5.62.0.0/16"]), {"registered_country": {"iso_code": "JP"}})
    # A private range in the database must still never be looked up.
    writer.insert_network(
        IPSet(["10.0.0.0/8"]),
        {"country": {"iso_code": "FR"}, "location": {"latitude": 48.85, "longitude": 2.35}},
    )
    path = tmp_path_factory.mktemp("geo") / "city.mmdb"
    writer.to_db_file(str(path))
    return path


@pytest.fixture(scope="module")
def with_db(city_db: Path):
    geo = Geolocator(city_db)
    yield geo
    geo.close()


@pytest.fixture(scope="module")
def offline() -> Geolocator:
    return Geolocator()


# -- distance ---------------------------------------------------------------


def test_haversine_spec_values():
    # One degree of longitude on the equator is 2πR/360.
    assert haversine_km(Location(0, 0), Location(0, 1)) == pytest.approx(2 * math.pi * R_KM / 360)
    # Pole to pole is half a great circle, πR.
    assert haversine_km(Location(90, 0), Location(-90, 0)) == pytest.approx(math.pi * R_KM)
    # Antipodes across the date line.
    assert haversine_km(Location(0, 179.5), Location(0, -0.5)) == pytest.approx(math.pi * R_KM)
    assert haversine_km(BERLIN, BERLIN) == 0.0


def law_of_cosines_km(a: Location, b: Location) -> float:
    """An independent great-circle formula (spherical law of cosines) to check against."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dl = math.radians(b.lon - a.lon)
    c = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)
    return R_KM * math.acos(max(-1.0, min(1.0, c)))


def test_haversine_known_cities():
    # Berlin–Frankfurt is about 424 km by air.
    assert haversine_km(BERLIN, FRANKFURT) == pytest.approx(424, abs=5)
    for a, b in [
        (BERLIN, FRANKFURT),
        (NEW_YORK, VIRGINIA),
        (BERLIN, VIRGINIA),
        (NEW_YORK, FRANKFURT),
    ]:
        assert haversine_km(a, b) == pytest.approx(law_of_cosines_km(a, b), rel=1e-9)
        assert haversine_km(a, b) == pytest.approx(haversine_km(b, a))


@pytest.mark.parametrize(
    ("lat", "lon"), [(91, 0), (-90.5, 0), (0, 181), (math.nan, 0), (0, math.inf)]
)
def test_location_rejects_impossible_points(lat, lon):
    with pytest.raises(ValueError):
        Location(lat, lon)


# -- city database ----------------------------------------------------------


def test_city_database_gives_coordinates(with_db: Geolocator):
    loc = with_db.locate("81.169.145.1")
    assert loc == Location(52.52, 13.40, country="DE", source="city")
    loc6 = with_db.locate("2a01:4f8:1c1c::1")
    assert loc6 == Location(50.11, 8.68, country="DE", source="city")
    assert with_db.has_city_db


def test_ipv4_mapped_ipv6_is_unwrapped(with_db: Geolocator):
    assert with_db.locate("::ffff:81.169.145.1") == with_db.locate("81.169.145.1")


def test_country_only_record_uses_country_centre(with_db: Geolocator):
    loc = with_db.locate("41.1.2.3")
    assert loc is not None
    assert loc.source == "country"
    assert loc.country == "ZA"
    assert loc == country_centroid("ZA")
    jp = with_db.locate("5.62.1.1")
    assert jp is not None
    assert jp.country == "JP"


def test_miss_in_city_database_falls_back_to_offline_country(with_db: Geolocator):
    loc = with_db.locate("8.8.8.8")
    assert loc is not None
    assert loc.source == "country"
    assert loc.country == "US"


@pytest.mark.parametrize(
    "ip",
    [
        "10.1.2.3",  # RFC 1918, in the test database on purpose
        "192.168.1.1",
        "172.16.0.1",
        "127.0.0.1",
        "100.64.0.1",  # CGNAT, RFC 6598
        "169.254.1.1",
        "192.0.2.1",  # documentation, RFC 5737
        "224.0.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fd00::1",
        "2001:db8::1",  # documentation, RFC 3849
        "ff02::1",
        "::ffff:10.0.0.1",
        "not an ip",
        "",
    ],
)
def test_unroutable_or_bad_addresses_have_no_location(with_db: Geolocator, ip: str):
    assert with_db.locate(ip) is None
    assert not is_locatable(ip)


def test_given_location_overrides_lookup(with_db: Geolocator):
    given_loc = Location(1.0, 2.0, country="XX")
    assert with_db.locate("81.169.145.1", given=given_loc) is given_loc
    assert with_db.locate(None) is None


def test_bad_database_path_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError) as err:
        Geolocator(tmp_path / "missing.mmdb")
    assert GEOIP_DB_ENV in err.value.detail
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"this is not a maxmind database" * 10)
    with pytest.raises(ConfigError):
        Geolocator(junk)


def test_from_env(city_db: Path):
    geo = Geolocator.from_env({GEOIP_DB_ENV: str(city_db)})
    try:
        assert geo.has_city_db
        assert geo.locate("81.169.145.1") == Location(52.52, 13.40, country="DE", source="city")
    finally:
        geo.close()
    assert not Geolocator.from_env({GEOIP_DB_ENV: ""}).has_city_db
    assert not Geolocator.from_env({}).has_city_db


# -- offline country fallback -----------------------------------------------


@pytest.mark.parametrize(
    ("ip", "country"),
    [
        ("8.8.8.8", "US"),
        ("81.169.145.1", "DE"),  # Strato, Berlin
        ("193.0.6.139", "NL"),  # RIPE NCC, Amsterdam
        ("2a00:1450:4001:80b::200e", "DE"),
    ],
)
def test_offline_country_lookup(offline: Geolocator, ip: str, country: str):
    loc = offline.locate(ip)
    assert loc is not None
    assert loc.country == country
    assert loc.source == "country"
    assert loc == country_centroid(country)


def test_offline_lookup_orders_continents(offline: Geolocator):
    de = offline.locate("81.169.145.1")
    us = offline.locate("8.8.8.8")
    assert de is not None
    assert us is not None
    assert haversine_km(de, FRANKFURT) < haversine_km(de, VIRGINIA)
    assert haversine_km(us, VIRGINIA) < haversine_km(us, FRANKFURT)


def test_no_fallback_means_unknown():
    assert Geolocator(country_fallback=False).locate("8.8.8.8") is None


def test_every_iso_country_has_a_plausible_centre():
    for country in pycountry.countries:
        centre = country_centroid(country.alpha_2)
        assert centre is not None, country.alpha_2
        assert -90 <= centre.lat <= 90
        assert -180 <= centre.lon <= 180
    de = country_centroid("de")
    assert de is not None
    assert 47 < de.lat < 55.1
    assert 5.8 < de.lon < 15.1  # Germany's bounding box
    assert country_centroid("ZZ") is None


# -- load balancer headers --------------------------------------------------


def test_cloudfront_headers():
    loc = location_from_headers(
        {
            "CloudFront-Viewer-Latitude": "52.52000",
            "CloudFront-Viewer-Longitude": "13.40000",
            "CloudFront-Viewer-Country": "DE",
        }
    )
    assert loc == Location(52.52, 13.40, country="DE", source="given")


def test_gcp_coordinates_and_plain_headers():
    assert location_from_headers({"X-Geo-Location-Coordinates": "40.71,-74.01"}) == Location(
        40.71, -74.01
    )
    assert location_from_headers({"x-geo-latitude": "1.5", "x-geo-longitude": "2.5"}) == Location(
        1.5, 2.5
    )


def test_country_only_header_gives_centre():
    assert location_from_headers({"X-Azure-Geo-Country": "us"}) == country_centroid("US")
    assert location_from_headers({"CF-IPCountry": "XX"}) is None


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"CloudFront-Viewer-Latitude": "north", "CloudFront-Viewer-Longitude": "13"},
        {"CloudFront-Viewer-Latitude": "95", "CloudFront-Viewer-Longitude": "13"},
        {"CloudFront-Viewer-Latitude": "nan", "CloudFront-Viewer-Longitude": "13"},
        {"CloudFront-Viewer-Latitude": "52"},
        {"X-Geo-Location-Coordinates": "1,2,3"},
        {"CloudFront-Viewer-Country": "Germany"},
    ],
)
def test_malformed_headers_are_ignored(headers):
    assert location_from_headers(headers) is None


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "CloudFront-Viewer-Latitude",
                "CloudFront-Viewer-Longitude",
                "CloudFront-Viewer-Country",
                "X-Geo-Location-Coordinates",
                "X-Azure-Geo-Country",
                "x-geo-latitude",
                "x-geo-longitude",
            ]
        ),
        st.text(max_size=40),
    )
)
def test_headers_never_crash(headers):
    loc = location_from_headers(headers)
    assert loc is None or isinstance(loc, Location)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.ip_addresses().map(str), st.text(max_size=50)))
def test_locate_never_crashes(with_db: Geolocator, ip):
    loc = with_db.locate(ip)
    assert loc is None or isinstance(loc, Location)

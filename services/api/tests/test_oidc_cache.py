"""Discovery and JWKS caching by HTTP cache headers (RFC 9111), and the checks on
a discovery document (OpenID Connect Discovery 1.0 §4.3). The provider side is
an httpx MockTransport here so that the headers and the clock are the test's."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from zerogate.api.errors import ProviderFailed
from zerogate.api.sign_in import oidc
from zerogate.api.sign_in.oidc import DEFAULT_TTL, HttpJsonCache

URL = "https://idp.test/.well-known/openid-configuration"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _cache(handler: Any, clock: Clock) -> HttpJsonCache:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return HttpJsonCache(http, timeout=2, clock=clock)


async def test_max_age_less_age_is_honoured():
    clock, hits = Clock(), []

    def handler(request):
        hits.append(request)
        return httpx.Response(
            200, json={"n": len(hits)}, headers={"Cache-Control": "public, max-age=60", "Age": "20"}
        )

    cache = _cache(handler, clock)
    assert await cache.get(URL) == {"n": 1}
    clock.now += 39
    assert await cache.get(URL) == {"n": 1}
    clock.now += 2  # 41 s: past max-age less the 20 s it had already aged
    assert await cache.get(URL) == {"n": 2}
    assert cache.fetches[URL] == 2
    await cache.http.aclose()


async def test_no_store_is_never_kept_and_silence_means_the_default():
    clock = Clock()
    counts = {"store": 0, "plain": 0}

    def handler(request):
        if request.url.path == "/no-store":
            counts["store"] += 1
            return httpx.Response(200, json={}, headers={"Cache-Control": "no-store, max-age=600"})
        counts["plain"] += 1
        return httpx.Response(200, json={})

    cache = _cache(handler, clock)
    for _ in range(3):
        await cache.get("https://idp.test/no-store")
        await cache.get("https://idp.test/plain")
    assert counts == {"store": 3, "plain": 1}
    clock.now += DEFAULT_TTL + 1
    await cache.get("https://idp.test/plain")
    assert counts["plain"] == 2
    await cache.http.aclose()


async def test_no_cache_revalidates_with_the_etag_and_keeps_the_body_on_304():
    clock, seen = Clock(), []

    def handler(request):
        seen.append(request.headers.get("if-none-match"))
        if request.headers.get("if-none-match") == '"v1"':
            return httpx.Response(304, headers={"ETag": '"v1"', "Cache-Control": "no-cache"})
        return httpx.Response(
            200, json={"keys": []}, headers={"ETag": '"v1"', "Cache-Control": "no-cache"}
        )

    cache = _cache(handler, clock)
    assert await cache.get(URL) == {"keys": []}
    assert await cache.get(URL) == {"keys": []}
    assert seen == [None, '"v1"']
    await cache.http.aclose()


async def test_expires_counts_from_the_date_header():
    clock, hits = Clock(), []

    def handler(request):
        hits.append(1)
        return httpx.Response(
            200,
            json={},
            headers={
                "Date": "Sun, 06 Dec 2026 10:00:00 GMT",
                "Expires": "Sun, 06 Dec 2026 10:00:30 GMT",
            },
        )

    cache = _cache(handler, clock)
    await cache.get(URL)
    clock.now += 29
    await cache.get(URL)
    clock.now += 2
    await cache.get(URL)
    assert len(hits) == 2
    await cache.http.aclose()


def _discovery(**overrides: Any) -> dict[str, Any]:
    return {
        "issuer": "https://idp.test",
        "authorization_endpoint": "https://idp.test/auth",
        "token_endpoint": "https://idp.test/token",
        "jwks_uri": "https://idp.test/jwks",
        "id_token_signing_alg_values_supported": ["RS256", "HS256", "none"],
        **overrides,
    }


async def test_discovery_keeps_only_asymmetric_algorithms():
    cache = _cache(lambda request: httpx.Response(200, json=_discovery()), Clock())
    meta = await oidc.discover(cache, "https://idp.test")
    assert meta.algorithms == frozenset({"RS256"})
    assert meta.token_endpoint == "https://idp.test/token"
    await cache.http.aclose()


@pytest.mark.parametrize(
    "document",
    [
        _discovery(issuer="https://evil.test"),
        _discovery(id_token_signing_alg_values_supported=["HS256", "none"]),
        _discovery(token_endpoint="http://idp.test/token"),
        _discovery(jwks_uri=None),
        _discovery(code_challenge_methods_supported=["plain"]),
        ["not", "an", "object"],
    ],
)
async def test_a_bad_discovery_document_is_a_provider_error(document):
    cache = _cache(lambda request: httpx.Response(200, json=document), Clock())
    with pytest.raises(ProviderFailed):
        await oidc.discover(cache, "https://idp.test")
    await cache.http.aclose()


async def test_an_error_status_or_garbage_is_a_provider_error():
    for response in (httpx.Response(500, text="oops"), httpx.Response(200, text="<html>")):
        cache = _cache(lambda request, r=response: r, Clock())
        with pytest.raises(ProviderFailed):
            await cache.get(URL)
        await cache.http.aclose()


async def test_an_unknown_kid_fetches_the_jwks_again_but_not_too_often():
    """Key rotation: the cached JWKS lacks the ID token's kid, so it is fetched again
    even though fresh; not more than once every JWKS_REFETCH_SECS."""
    import time

    from joserfc import jwt
    from joserfc.jwk import KeySet, RSAKey

    old, new = RSAKey.generate_key(2048, {"kid": "old"}), RSAKey.generate_key(2048, {"kid": "new"})
    served = {"keys": KeySet([old])}

    def handler(request):
        body = served["keys"].as_dict(private=False)
        return httpx.Response(200, json=body, headers={"Cache-Control": "max-age=3600"})

    clock = Clock()
    cache = _cache(handler, clock)
    meta = oidc.ProviderMetadata(
        "https://idp.test",
        "https://idp.test/a",
        "https://idp.test/t",
        "https://idp.test/jwks",
        frozenset({"RS256"}),
    )
    now = int(time.time())
    claims = {
        "iss": "https://idp.test",
        "aud": "c",
        "sub": "s",
        "iat": now,
        "exp": now + 60,
        "nonce": "n",
    }
    token = jwt.encode({"alg": "RS256", "kid": "new"}, claims, new)
    await cache.get(meta.jwks_uri)  # the old set, fresh for an hour
    served["keys"] = KeySet([old, new])
    with pytest.raises(oidc.IdTokenRejected) as early:  # too soon to ask again
        await oidc.verify_id_token(cache, meta, token, client_id="c", nonce="n", leeway=0)
    assert early.value.code == "id_token_signature"
    clock.now += oidc.JWKS_REFETCH_SECS
    got = await oidc.verify_id_token(cache, meta, token, client_id="c", nonce="n", leeway=0)
    assert got["sub"] == "s"
    assert cache.fetches[meta.jwks_uri] == 2
    await cache.http.aclose()

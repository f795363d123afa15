"""OpenID Connect relying party glue: discovery, JWKS, code exchange, ID token checks.

The protocol work is done by libraries: authlib's sans-IO OAuth 2.0 core builds
the authorization request (RFC 6749 §4.1.1 with PKCE S256 from RFC 7636,
``state`` and ``nonce``), the token request and the client authentication
(``client_secret_basic``, or none for a public client); joserfc verifies the ID
token's signature and registered claims. The HTTP is our one httpx client (not
authlib's httpx integration, which now warns in favour of another HTTP
library). What is written here is the glue:

* :class:`HttpJsonCache`: discovery documents and JWKS fetched over httpx and
  kept as their HTTP cache headers allow (``Cache-Control: max-age`` less
  ``Age``, ``Expires``, ``no-cache`` and ``no-store``; revalidated with
  ``ETag``/``Last-Modified``); a default of :data:`DEFAULT_TTL` when a response
  says nothing, never more than :data:`MAX_TTL`. A JWKS without the ID token's
  ``kid`` is fetched again (key rotation), at most every :data:`JWKS_REFETCH_SECS`.
* every call to a provider is bounded by ``ZG_OIDC_TIMEOUT`` as a whole
  (connect, each read and the total), and a response by :data:`MAX_RESPONSE_BYTES`:
  an unreachable or silent provider fails the sign-in with 503 at once, never a hang.
* :func:`verify_id_token`: the signature against the provider's JWKS with only
  the asymmetric algorithms the provider announces (never ``none``, never an
  HS* algorithm keyed with a public key); ``iss`` equal to the configured issuer,
  ``aud`` holding our client id (and ``azp`` equal to it when present or when
  there are several audiences), ``exp`` and ``iat`` within ``ZG_OIDC_LEEWAY_SECS``,
  and ``nonce`` equal to the one we sent. Each failure has its own problem type.
"""

from __future__ import annotations

import asyncio
import email.utils
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import httpx
from authlib.oauth2.auth import ClientAuth  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749.parameters import (  # type: ignore[import-untyped]
    prepare_grant_uri,
    prepare_token_request,
)
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]
from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet

from zerogate.api.errors import ProviderFailed, Unauthorized, Unavailable

log = logging.getLogger(__name__)

#: Signature algorithms an ID token may use: asymmetric only (RFC 7518 §3.3-3.5,
#: RFC 8037). HS* would key the MAC with something a relying party shares or
#: publishes; "none" is no signature.
ASYMMETRIC_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
DEFAULT_TTL: Final = 300.0
MAX_TTL: Final = 86_400.0
JWKS_REFETCH_SECS: Final = 10.0
MAX_RESPONSE_BYTES: Final = 512 * 1024
MAX_CACHED_URLS: Final = 1_000
#: An ID token issued longer ago than this is refused whatever its ``exp``.
MAX_ID_TOKEN_AGE_SECS: Final = 86_400


class IdTokenRejected(Unauthorized):
    """The provider's ID token is not acceptable; ``code`` names why."""

    default_code = "id_token_invalid"


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """The parts of an OpenID Provider's discovery document we use."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: frozenset[str]


@dataclass(slots=True)
class _Entry:
    value: Any
    fresh_until: float
    fetched_at: float
    etag: str | None
    last_modified: str | None


def _freshness(headers: httpx.Headers, now_wall: float) -> float | None:
    """Seconds the response may be used without asking again; None: don't store it."""
    directives: dict[str, str | None] = {}
    for part in headers.get("cache-control", "").split(","):
        name, _, value = part.strip().partition("=")
        if name:
            directives[name.lower()] = value.strip('"') or None
    if "no-store" in directives:
        return None
    if "no-cache" in directives:
        return 0.0
    max_age = directives.get("max-age")
    if max_age is not None and max_age.isdigit():
        age = headers.get("age", "0")
        return max(0.0, float(max_age) - (float(age) if age.isdigit() else 0.0))
    expires = headers.get("expires")
    if expires is not None:
        try:
            when = email.utils.parsedate_to_datetime(expires).timestamp()
        except (TypeError, ValueError):
            return 0.0  # RFC 9111 §5.3: an invalid Expires means already expired
        date = headers.get("date")
        base = now_wall
        if date is not None:
            try:
                base = email.utils.parsedate_to_datetime(date).timestamp()
            except (TypeError, ValueError):
                base = now_wall
        return max(0.0, when - base)
    return DEFAULT_TTL


class HttpJsonCache:
    """JSON documents by URL, kept as long as their cache headers allow."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http = http
        self.timeout = timeout
        self.clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        #: Requests actually sent, by URL (tests and metrics read it).
        self.fetches: dict[str, int] = {}

    async def get(self, url: str, *, refresh: bool = False) -> Any:
        """The document at ``url``; ``refresh`` asks the server even if fresh."""
        entry = self._entries.get(url)
        now = self.clock()
        if entry is not None and not refresh and now < entry.fresh_until:
            return entry.value
        headers = {"Accept": "application/json"}
        if entry is not None:
            if entry.etag:
                headers["If-None-Match"] = entry.etag
            if entry.last_modified:
                headers["If-Modified-Since"] = entry.last_modified
        status, response_headers, body = await self._fetch(url, headers)
        now = self.clock()
        fresh = _freshness(response_headers, time.time())
        if status == 304 and entry is not None:
            value = entry.value
        elif status == 200:
            try:
                value = httpx.Response(200, content=body).json()
            except ValueError as exc:
                raise ProviderFailed(f"the identity provider's {url} is not JSON") from exc
        else:
            raise ProviderFailed(f"the identity provider answered {status} for {url}")
        if fresh is None:
            self._entries.pop(url, None)
            return value
        self._entries[url] = _Entry(
            value,
            now + min(fresh, MAX_TTL),
            now,
            response_headers.get("etag"),
            response_headers.get("last-modified"),
        )
        self._entries.move_to_end(url)
        while len(self._entries) > MAX_CACHED_URLS:
            self._entries.popitem(last=False)
        return value

    def age(self, url: str) -> float | None:
        entry = self._entries.get(url)
        return None if entry is None else self.clock() - entry.fetched_at

    async def _fetch(self, url: str, headers: dict[str, str]) -> tuple[int, httpx.Headers, bytes]:
        self.fetches[url] = self.fetches.get(url, 0) + 1
        try:
            async with asyncio.timeout(self.timeout):
                async with self.http.stream(
                    "GET", url, headers=headers, timeout=self.timeout, follow_redirects=False
                ) as response:
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_RESPONSE_BYTES:
                            raise ProviderFailed(f"the identity provider's {url} is too large")
                    return response.status_code, response.headers, bytes(body)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise Unavailable(
                f"the identity provider did not answer within {self.timeout:g}s (ZG_OIDC_TIMEOUT)",
                code="provider_unavailable",
            ) from exc
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"the identity provider cannot be reached ({exc.__class__.__name__})",
                code="provider_unavailable",
            ) from exc


def _https_or_loopback(url: object, name: str) -> str:
    if not isinstance(url, str) or not url:
        raise ProviderFailed(f"the discovery document has no {name}")
    parsed = httpx.URL(url)
    if parsed.scheme == "https" or (
        parsed.scheme == "http" and parsed.host in {"127.0.0.1", "::1", "localhost"}
    ):
        return url
    raise ProviderFailed(f"the discovery document's {name} is not an https URL")


async def discover(cache: HttpJsonCache, issuer: str) -> ProviderMetadata:
    """The provider's metadata (OpenID Connect Discovery 1.0 §4), checked."""
    document = await cache.get(issuer.rstrip("/") + "/.well-known/openid-configuration")
    if not isinstance(document, dict):
        raise ProviderFailed("the discovery document is not a JSON object")
    if document.get("issuer") != issuer:
        # §4.3: the issuer in the document must be exactly the one configured.
        raise ProviderFailed("the discovery document names another issuer")
    methods = document.get("code_challenge_methods_supported")
    if isinstance(methods, list) and "S256" not in methods:
        raise ProviderFailed("the identity provider does not support PKCE with S256")
    announced = document.get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = frozenset(a for a in announced if isinstance(a, str)) & ASYMMETRIC_ALGORITHMS
    if not algorithms:
        raise ProviderFailed("the identity provider signs ID tokens with no algorithm we accept")
    return ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=_https_or_loopback(
            document.get("authorization_endpoint"), "authorization_endpoint"
        ),
        token_endpoint=_https_or_loopback(document.get("token_endpoint"), "token_endpoint"),
        jwks_uri=_https_or_loopback(document.get("jwks_uri"), "jwks_uri"),
        algorithms=algorithms,
    )


def authorization_url(
    meta: ProviderMetadata,
    *,
    client_id: str,
    redirect_uri: str,
    scopes: list[str],
    state: str,
    nonce: str,
    code_verifier: str,
) -> str:
    """The URL that sends the browser to the provider (authorization code + PKCE S256)."""
    url: str = prepare_grant_uri(
        meta.authorization_endpoint,
        client_id,
        "code",
        redirect_uri=redirect_uri,
        scope=" ".join(scopes),
        state=state,
        nonce=nonce,
        code_challenge=create_s256_code_challenge(code_verifier),
        code_challenge_method="S256",
    )
    return url


async def exchange_code(
    http: httpx.AsyncClient,
    meta: ProviderMetadata,
    *,
    client_id: str,
    client_secret: str | None,
    redirect_uri: str,
    code: str,
    code_verifier: str,
    timeout: float,
) -> dict[str, Any]:
    """The provider's token response for ``code`` (RFC 6749 §4.1.3, with our PKCE
    verifier; client_secret_basic when the provider has a secret, else a public
    client)."""
    body = prepare_token_request(
        "authorization_code",
        code=code,
        redirect_uri=redirect_uri,
        code_verifier=code_verifier,
    )
    method = "client_secret_basic" if client_secret else "none"
    _, headers, body = ClientAuth(client_id, client_secret, method).prepare(
        "POST", meta.token_endpoint, {}, body
    )
    headers = {
        **headers,
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
    }
    try:
        async with asyncio.timeout(timeout):
            response = await http.post(
                meta.token_endpoint, content=body, headers=headers, timeout=timeout
            )
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise Unavailable(
            f"the identity provider did not answer within {timeout:g}s (ZG_OIDC_TIMEOUT)",
            code="provider_unavailable",
        ) from exc
    except httpx.HTTPError as exc:
        raise Unavailable(
            f"the identity provider cannot be reached ({exc.__class__.__name__})",
            code="provider_unavailable",
        ) from exc
    if len(response.content) > MAX_RESPONSE_BYTES:
        raise ProviderFailed("the identity provider's token response is too large")
    try:
        token = response.json()
    except ValueError as exc:
        raise ProviderFailed("the identity provider's token response is not JSON") from exc
    if not isinstance(token, dict):
        raise ProviderFailed("the identity provider's token response is not a JSON object")
    if response.status_code != 200 or "error" in token:
        # The provider's error code helps the operator; it holds no secret.
        error = str(token.get("error", response.status_code))[:64]
        raise ProviderFailed(
            f"the identity provider refused the code exchange ({error})",
            code="provider_refused_code",
        )
    if not isinstance(token.get("id_token"), str):
        raise ProviderFailed("the identity provider's token response holds no ID token")
    return token


def _header_kid(id_token: str) -> str | None:
    try:
        kid = jws.extract_compact(id_token.encode()).headers().get("kid")
    except (JoseError, ValueError):
        return None
    return kid if isinstance(kid, str) else None


async def _key_set(cache: HttpJsonCache, meta: ProviderMetadata, kid: str | None) -> KeySet:
    jwks = await cache.get(meta.jwks_uri)
    keys = _import_keys(jwks)
    if kid is not None and all(k.kid != kid for k in keys.keys):
        age = cache.age(meta.jwks_uri)
        if age is None or age >= JWKS_REFETCH_SECS:  # the provider may have rotated its keys
            keys = _import_keys(await cache.get(meta.jwks_uri, refresh=True))
    return keys


def _import_keys(jwks: Any) -> KeySet:
    try:
        return KeySet.import_key_set(jwks)
    except (JoseError, KeyError, TypeError, ValueError) as exc:
        raise ProviderFailed("the identity provider's JWKS cannot be read") from exc


def _reject(code: str, detail: str) -> IdTokenRejected:
    return IdTokenRejected(detail, code=code)


async def verify_id_token(
    cache: HttpJsonCache,
    meta: ProviderMetadata,
    id_token: str,
    *,
    client_id: str,
    nonce: str,
    leeway: int,
    now: float | None = None,
) -> dict[str, Any]:
    """The ID token's claims once every check of OpenID Connect Core §3.1.3.7 passed."""
    keys = await _key_set(cache, meta, _header_kid(id_token))
    try:
        token = jwt.decode(id_token, keys, algorithms=sorted(meta.algorithms))
    except BadSignatureError as exc:
        raise _reject("id_token_signature", "the ID token's signature does not verify") from exc
    except JoseError as exc:
        # An algorithm outside the provider's asymmetric ones (none, HS256), an
        # unknown key, or not a JWS at all.
        raise _reject(
            "id_token_signature", f"the ID token cannot be verified ({exc.error})"
        ) from exc
    claims: dict[str, Any] = dict(token.claims)
    moment = int(now if now is not None else time.time())
    registry = jwt.JWTClaimsRegistry(
        now=moment,
        leeway=leeway,
        iss={"essential": True, "value": meta.issuer},
        aud={"essential": True, "value": client_id},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
    )
    try:
        registry.validate(claims)
    except ExpiredTokenError as exc:
        raise _reject("id_token_expired", "the ID token has expired") from exc
    except (ClaimError, MissingClaimError) as exc:
        claim = exc.claim
        code = {
            "iss": "id_token_issuer",
            "aud": "id_token_audience",
            "iat": "id_token_expired",
            "exp": "id_token_expired",
        }.get(claim, "id_token_invalid")
        raise _reject(code, f"the ID token's {claim} claim is not acceptable") from exc
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != client_id:
        raise _reject("id_token_audience", "the ID token was issued to another party (azp)")
    if claims["iat"] < moment - MAX_ID_TOKEN_AGE_SECS:
        raise _reject("id_token_expired", "the ID token was issued too long ago")
    got = claims.get("nonce")
    if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
        raise _reject("id_token_nonce", "the ID token's nonce is not the one this sign-in sent")
    return claims

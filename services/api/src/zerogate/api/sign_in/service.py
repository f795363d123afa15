"""Sign-in with an account's OpenID provider: the api is the relying party.

Three legs, each answered by one function here (the README's "Sign-in" section
shows them as a CLI sees them):

1. :func:`start` (``GET /v1/sign_in/{account_slug}``): checks the client's
   loopback ``redirect_uri`` (RFC 8252 §7.3: ``http`` to 127.0.0.1, [::1] or
   localhost with a port) and its PKCE ``code_challenge`` (S256), stores a sign-in
   request (state and nonce of 32 random bytes, our own PKCE verifier toward the
   provider; found by SHA-256 of the state, good once, for ``ZG_SIGN_IN_TTL_SECS``)
   and answers with the provider's authorization URL.
2. :func:`callback` (``GET /v1/sign_in/callback``): takes the request by its
   state (a second use finds nothing), exchanges the provider's code with our
   verifier, verifies the ID token (:func:`.oidc.verify_id_token`), maps the email
   claim to an actor of the account, and redirects the browser to the client's
   loopback URI with a one-time code (found by its SHA-256, good once, for
   ``ZG_SIGN_IN_CODE_TTL_SECS``) and the client's state. Once the state is known
   good, a failure is sent to the loopback URI as ``error``, ``error_description``
   and ``error_uri`` (the problem type) instead, so the waiting client can tell.
3. :func:`exchange` (``POST /v1/sign_in/token``): the code and the client's PKCE
   verifier (and the same redirect_uri) buy a token: a client token expiring after
   the provider's client session lifetime, or for ``kind=admin`` an API token
   (an admin session) expiring after its admin session lifetime. A second use of
   a code is refused and revokes the token the first use issued (RFC 6749 §4.1.2).

Nothing is created by a failure: no actor, no code, no token. Each failure has
its own problem type (``https://zerogate.dev/problems/<code>``):

==================================  ===  ====================================
code                                HTTP when
==================================  ===  ====================================
sign_in_state_invalid               400  callback: unknown or already used state
sign_in_expired                     400  callback or token: request or code too old
sign_in_redirect_uri_invalid        422  start: not a loopback URI with a port
sign_in_code_invalid                400  token: unknown code
sign_in_code_replayed               400  token: the code was used (its token is revoked)
sign_in_redirect_uri_mismatch       400  token: not the redirect_uri of the start
sign_in_verifier_mismatch           400  token: S256(verifier) is not the challenge
provider_denied                     400  callback: the provider sent an error
provider_mixup                      400  callback: ``iss`` (RFC 9207) is another issuer
id_token_signature                  401  callback: signature, algorithm or key
id_token_issuer / _audience         401  callback: ``iss`` / ``aud``/``azp`` wrong
id_token_expired / _nonce           401  callback: ``exp``/``iat`` / ``nonce`` wrong
sign_in_email_missing               403  callback: no email in the provider's claim
sign_in_email_unverified            403  callback: ``email_verified`` is false
sign_in_unknown_user                403  callback: no actor with that email (no JIT)
sign_in_actor_disabled              403  callback or token: the actor is disabled
sign_in_not_allowed                 403  callback or token: kind not open to the actor
provider_refused_code               502  callback: the provider refused our code
provider_unavailable                503  start or callback: the provider does not answer
==================================  ===  ====================================

Logged: account, provider and actor ids. Never logged: states, nonces, codes,
verifiers, ID tokens, client secrets, tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from zerogate.api import problems, requestctx
from zerogate.api.accounts import repository as accounts
from zerogate.api.actors import repository as actors
from zerogate.api.actors.repository import ActorRow
from zerogate.api.auth_providers import repository as providers
from zerogate.api.auth_providers.repository import AuthProviderRow
from zerogate.api.auth_providers.secrets import open_sealed
from zerogate.api.db import Connection, Pool, transaction
from zerogate.api.errors import (
    BadRequest,
    Forbidden,
    Invalid,
    NotFound,
    Unauthorized,
    Unavailable,
    ZerogateError,
    not_found,
)
from zerogate.api.events import Publisher, unit_of_work
from zerogate.api.settings import ApiSettings
from zerogate.api.sign_in import oidc, repository
from zerogate.api.sign_in.oidc import HttpJsonCache, IdTokenRejected
from zerogate.api.sign_in.repository import SignInCodeRow
from zerogate.api.sign_in.schemas import SignInStarted, SignInTokenCreated, SignInTokenRequest
from zerogate.api.tokens import repository as tokens
from zerogate.api.tokens.repository import VerifiedToken
from zerogate.api.tokens.rules import emit_revoked

log = logging.getLogger(__name__)

SECRET_BYTES: Final = 32
CALLBACK_PATH: Final = "/v1/sign_in/callback"
#: Who may sign in for which kind of session.
KINDS: Final = {
    "client": frozenset({"account_user", "account_admin_user"}),
    "admin": frozenset({"account_admin_user"}),
}
#: Used codes are kept this long past their expiry, to recognise late replays.
KEEP_USED_CODES_SECS: Final = 3600.0
#: A JIT user's display name is at most this long.
MAX_NAME: Final = 255


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def s256(verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL(SHA256(ASCII(code_verifier))), unpadded."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def check_loopback_redirect(uri: str) -> str:
    """RFC 8252 §7.3: ``http://127.0.0.1:PORT/...``, ``http://[::1]:PORT/...`` or
    ``http://localhost:PORT/...``; no credentials, no fragment."""
    loc = ("query", "redirect_uri")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise Invalid(
            "redirect_uri: not a URL", loc=loc, code="sign_in_redirect_uri_invalid"
        ) from exc
    host = parts.hostname or ""
    loopback = host == "localhost" or host in {"127.0.0.1", "::1"}
    if parts.scheme != "http" or not loopback or port is None or port == 0:
        raise Invalid(
            "redirect_uri: must be a loopback address with a port: http://127.0.0.1:PORT/..., "
            "http://[::1]:PORT/... or http://localhost:PORT/... (RFC 8252)",
            loc=loc,
            code="sign_in_redirect_uri_invalid",
        )
    if parts.username or parts.password or parts.fragment:
        raise Invalid(
            "redirect_uri: must carry no credentials and no fragment",
            loc=loc,
            code="sign_in_redirect_uri_invalid",
        )
    return uri


def _with_query(uri: str, params: dict[str, str]) -> str:
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


async def _provider_for(pool: Pool, slug: str, provider_id: uuid.UUID | None) -> AuthProviderRow:
    async with pool.acquire() as conn:
        account = await accounts.get_by_slug(conn, slug)
        if account is None:
            raise not_found("account")
        if provider_id is not None:
            found = await providers.get(conn, account.id, provider_id)
            if found is None:
                raise not_found("auth provider")
            return found
        candidates = await providers.all_of_account(conn, account.id, 2)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise not_found("auth provider")
    raise Invalid(
        "provider: the account has several identity providers; name one by id",
        loc=("query", "provider"),
    )


async def start(
    pool: Pool,
    cache: HttpJsonCache,
    settings: ApiSettings,
    *,
    account_slug: str,
    provider_id: uuid.UUID | None,
    kind: str,
    redirect_uri: str,
    code_challenge: str,
    client_state: str | None,
    callback_url: str,
) -> SignInStarted:
    check_loopback_redirect(redirect_uri)
    provider = await _provider_for(pool, account_slug, provider_id)
    meta = await oidc.discover(cache, provider.issuer)
    state = secrets.token_urlsafe(SECRET_BYTES)
    nonce = secrets.token_urlsafe(SECRET_BYTES)
    verifier = secrets.token_urlsafe(SECRET_BYTES)
    async with transaction(pool) as conn:
        await repository.create_request(
            conn,
            state_hash=_hash(state),
            account_id=provider.account_id,
            auth_provider_id=provider.id,
            kind=kind,
            nonce=nonce,
            provider_verifier=verifier,
            redirect_uri=redirect_uri,
            client_code_challenge=code_challenge,
            client_state=client_state,
            ttl_secs=settings.sign_in_ttl_secs,
        )
    url = oidc.authorization_url(
        meta,
        client_id=provider.client_id,
        redirect_uri=callback_url,
        scopes=list(provider.scopes),
        state=state,
        nonce=nonce,
        code_verifier=verifier,
    )
    log.info(
        "sign-in started",
        extra={"account_id": str(provider.account_id), "auth_provider_id": str(provider.id)},
    )
    return SignInStarted(
        authorization_url=url,
        expires_at=datetime.now(UTC) + timedelta(seconds=settings.sign_in_ttl_secs),
    )


@dataclass(frozen=True, slots=True)
class CallbackParams:
    state: str | None
    code: str | None
    error: str | None
    iss: str | None


def _oauth_error(exc: ZerogateError) -> str:
    """The RFC 6749 §4.1.2.1 ``error`` for a failure sent to the client's redirect."""
    if isinstance(exc, Unavailable):
        return "temporarily_unavailable"
    if isinstance(exc, BadRequest | Forbidden | Unauthorized | NotFound):
        return "access_denied"
    return "server_error"


async def callback(
    pool: Pool,
    cache: HttpJsonCache,
    settings: ApiSettings,
    params: CallbackParams,
    *,
    callback_url: str,
) -> str:
    """The URL to send the browser to: the client's loopback redirect with a
    one-time code, or with an error once the state is known good."""
    if not params.state or len(params.state) > 512:
        raise BadRequest("the sign-in state is missing", code="sign_in_state_invalid")
    async with transaction(pool) as conn:
        request = await repository.take_request(conn, _hash(params.state))
        expired = request is not None and await repository.now_is_past(conn, request.expires_at)
    if request is None:
        raise BadRequest(
            "the sign-in state is unknown or was already used; start the sign-in again",
            code="sign_in_state_invalid",
        )
    if expired:
        raise BadRequest("the sign-in took too long; start it again", code="sign_in_expired")
    echo = {"state": request.client_state} if request.client_state is not None else {}
    try:
        code = await _finish(pool, cache, settings, request, params, callback_url=callback_url)
    except ZerogateError as exc:
        log.info(
            "sign-in refused",
            extra={"account_id": str(request.account_id), "problem": exc.code},
        )
        return _with_query(
            request.redirect_uri,
            {
                "error": _oauth_error(exc),
                "error_description": exc.detail,
                "error_uri": problems.TYPE_BASE + exc.code,
                **echo,
            },
        )
    return _with_query(request.redirect_uri, {"code": code, **echo})


async def _finish(
    pool: Pool,
    cache: HttpJsonCache,
    settings: ApiSettings,
    request: repository.SignInRequestRow,
    params: CallbackParams,
    *,
    callback_url: str,
) -> str:
    if params.error is not None:
        raise BadRequest(
            f"the identity provider ended the sign-in ({params.error[:64]})",
            code="provider_denied",
        )
    async with pool.acquire() as conn:
        provider = await providers.get(conn, request.account_id, request.auth_provider_id)
    if provider is None:
        raise not_found("auth provider")
    if params.iss is not None and params.iss != provider.issuer:
        raise BadRequest(
            "the authorization response names another issuer (RFC 9207)", code="provider_mixup"
        )
    if not params.code or len(params.code) > 2048:
        raise BadRequest("the provider sent no authorization code", code="provider_denied")
    meta = await oidc.discover(cache, provider.issuer)
    secret = (
        None
        if provider.client_secret_sealed is None
        else open_sealed(settings.secret_key_bytes(), provider.id, provider.client_secret_sealed)
    )
    answer = await oidc.exchange_code(
        cache.http,
        meta,
        client_id=provider.client_id,
        client_secret=secret,
        redirect_uri=callback_url,
        code=params.code,
        code_verifier=request.provider_verifier,
        timeout=settings.oidc_timeout,
    )
    claims = await oidc.verify_id_token(
        cache,
        meta,
        answer["id_token"],
        client_id=provider.client_id,
        nonce=request.nonce,
        leeway=settings.oidc_leeway_secs,
        now=_now(),
    )
    email = claims.get(provider.email_claim)
    if not isinstance(email, str) or "@" not in email or len(email) > 320:
        raise Forbidden(
            f"the provider's {provider.email_claim} claim holds no email",
            code="sign_in_email_missing",
        )
    if claims.get("email_verified") is False:
        raise Forbidden(
            "the provider says this email is not verified", code="sign_in_email_unverified"
        )
    code = secrets.token_urlsafe(SECRET_BYTES)
    async with transaction(pool) as conn:
        actor = await actors.get_by_email(conn, provider.account_id, email)
        if actor is None:
            if not (provider.allow_jit_users and request.kind == "client"):
                raise Forbidden(
                    "no user of this account has this email", code="sign_in_unknown_user"
                )
            actor = await _create_jit_user(conn, provider, email, claims.get("name"))
        _check_actor(actor, request.kind)
        await repository.create_code(
            conn,
            code_hash=_hash(code),
            account_id=provider.account_id,
            auth_provider_id=provider.id,
            actor_id=actor.id,
            kind=request.kind,
            redirect_uri=request.redirect_uri,
            client_code_challenge=request.client_code_challenge,
            ttl_secs=settings.sign_in_code_ttl_secs,
        )
    log.info(
        "sign-in callback accepted",
        extra={"account_id": str(provider.account_id), "actor_id": str(actor.id)},
    )
    return code


async def _create_jit_user(
    conn: Connection, provider: AuthProviderRow, email: str, name: object
) -> ActorRow:
    """A just-in-time user: an account_user, in Everyone like every actor (Everyone
    has no membership rows), recorded in the audit log as this request's change."""
    display = name if isinstance(name, str) and name.strip() else email.split("@", 1)[0]
    actor = await actors.create_actor(
        conn,
        account_id=provider.account_id,
        type="account_user",
        name=display.strip()[:MAX_NAME],
        email=email,
    )
    ctx = requestctx.current()
    if ctx is not None:
        ctx.caller(provider.account_id, actor.id, None)
        ctx.audit_anyway = True
        requestctx.note_created("actor_id", actor.id)
    return actor


def _check_actor(actor: ActorRow, kind: str) -> None:
    if actor.disabled_at is not None:
        raise Forbidden("this user is disabled", code="sign_in_actor_disabled")
    if actor.type not in KINDS[kind]:
        raise Forbidden(
            f"a {actor.type} may not sign in for a {kind} session", code="sign_in_not_allowed"
        )


def _now() -> float:
    """The time ID tokens are judged at (a seam for tests)."""
    return datetime.now(UTC).timestamp()


async def exchange(
    pool: Pool,
    publisher: Publisher | None,
    settings: ApiSettings,
    body: SignInTokenRequest,
) -> SignInTokenCreated:
    code_hash = _hash(body.code)
    replayed = False
    issued: SignInTokenCreated | None = None
    failure: ZerogateError | None = None
    async with unit_of_work(pool, publisher) as uow:
        code = await repository.lock_code(uow.conn, code_hash)
        if code is None:
            raise BadRequest("the sign-in code is unknown", code="sign_in_code_invalid")
        ctx = requestctx.current()
        if ctx is not None:
            ctx.caller(code.account_id, code.actor_id, None)
        if code.used_at is not None:
            # RFC 6749 §4.1.2: a code used twice revokes what its first use issued.
            replayed = True
            if code.token_id is not None:
                revoked = await tokens.revoke_by_id(uow.conn, code.token_id)
                if revoked is not None:
                    emit_revoked(uow, revoked)
        else:
            try:
                issued = await _redeem(uow.conn, settings, code, code_hash, body)
            except _Commit as burnt:
                failure = burnt.error  # raised once the burnt code is committed
    if failure is not None:
        raise failure
    if replayed:
        log.warning("sign-in code replayed", extra={"account_id": str(code.account_id)})
        raise BadRequest(
            "the sign-in code was already used; the session it opened is revoked",
            code="sign_in_code_replayed",
        )
    assert issued is not None
    return issued


async def _redeem(
    conn: Connection,
    settings: ApiSettings,
    code: SignInCodeRow,
    code_hash: bytes,
    body: SignInTokenRequest,
) -> SignInTokenCreated:
    if await repository.now_is_past(conn, code.expires_at):
        raise BadRequest("the sign-in code has expired", code="sign_in_expired")
    if not hmac.compare_digest(body.redirect_uri.encode(), code.redirect_uri.encode()):
        raise BadRequest(
            "redirect_uri: not the one the sign-in was started with",
            code="sign_in_redirect_uri_mismatch",
        )
    if not hmac.compare_digest(s256(body.code_verifier), code.client_code_challenge):
        # Burn the code: whoever holds it without the verifier gets no second guess.
        await repository.mark_code_used(conn, code_hash, None)
        raise _Commit(
            BadRequest(
                "code_verifier: S256 of it is not the code_challenge the sign-in started with",
                code="sign_in_verifier_mismatch",
            )
        )
    actor = await actors.get_actor(conn, code.account_id, code.actor_id)
    if actor is None:
        raise BadRequest("the sign-in code is unknown", code="sign_in_code_invalid")
    _check_actor(actor, code.kind)
    provider = await providers.get(conn, code.account_id, code.auth_provider_id)
    if provider is None:
        raise BadRequest("the sign-in code is unknown", code="sign_in_code_invalid")
    now = datetime.now(UTC)
    admin = code.kind == "admin"
    if admin:
        lifetime = min(
            timedelta(seconds=provider.admin_session_lifetime_secs),
            timedelta(days=settings.api_token_max_days),
        )
    else:
        lifetime = min(
            timedelta(seconds=provider.client_session_lifetime_secs),
            timedelta(days=settings.client_token_max_days),
        )
    row, token = await tokens.create_token(
        conn,
        account_id=code.account_id,
        type="api" if admin else "client",
        actor_id=actor.id,
        name=f"sign-in via {provider.name}"[:255],
        expires_at=now + lifetime,
        created_by=actor.id,
        auth_provider_id=provider.id,
    )
    await repository.mark_code_used(conn, code_hash, row.id)
    ctx = requestctx.current()
    if ctx is not None:
        ctx.caller(code.account_id, actor.id, row.id)
        requestctx.note_created("token_id", row.id)
    log.info(
        "signed in",
        extra={"account_id": str(code.account_id), "actor_id": str(actor.id), "kind": code.kind},
    )
    assert row.expires_at is not None
    return SignInTokenCreated(
        token=token,
        token_id=row.id,
        type="api" if admin else "client",
        kind="admin" if admin else "client",
        expires_at=row.expires_at,
        account_id=code.account_id,
        actor_id=actor.id,
        auth_provider_id=provider.id,
    )


class _Commit(ZerogateError):
    """Carries an error out of a transaction that must still commit (a burnt code)."""

    def __init__(self, error: ZerogateError) -> None:
        super().__init__(error.detail, code=error.code)
        self.error = error


async def sign_out(pool: Pool, publisher: Publisher | None, grant: VerifiedToken) -> None:
    """Revoke the presented token (``token.revoked`` ends the flows resting on it)."""
    async with unit_of_work(pool, publisher) as uow:
        row = await tokens.revoke_token(uow.conn, grant.account_id, grant.token_id)
        if row is None:
            raise Unauthorized("the token is invalid, expired or revoked")
        emit_revoked(uow, row)


__all__ = ["IdTokenRejected", "callback", "exchange", "sign_out", "start"]

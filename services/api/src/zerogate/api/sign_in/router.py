"""``/v1/sign_in``: sign-in through an account's identity provider, and sign-out.

No bearer token opens these (but sign-out, which takes the token it ends); each
request takes one from the source IP's rate-limit bucket instead
(``ZG_RATE_LIMIT_IP_*``). See :mod:`zerogate.api.sign_in.service` and the
README's "Sign-in" section for the flow.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse, RedirectResponse

from zerogate.api.auth import limiter_of, remote_ip, verify_bearer
from zerogate.api.deps import PoolDep, PublisherDep, SettingsDep, pool_of
from zerogate.api.sign_in import service
from zerogate.api.sign_in.oidc import HttpJsonCache
from zerogate.api.sign_in.redact import redact_current_span
from zerogate.api.sign_in.schemas import (
    ClientState,
    CodeChallenge,
    SignInKind,
    SignInStarted,
    SignInTokenCreated,
    SignInTokenRequest,
)

router = APIRouter(prefix="/v1/sign_in", tags=["sign_in"])
#: OAuth 2.0 (RFC 6749 §5.1): token responses are never cached.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def ip_limited(request: Request) -> None:
    """Charge the source IP's bucket (429 when it is empty)."""
    limiter = limiter_of(request)
    ip = remote_ip(request)
    limiter.check_ip_not_refused(ip)
    async with pool_of(request).acquire() as conn:
        await limiter.charge_ip(conn, ip)


async def oidc_cache(request: Request) -> HttpJsonCache:
    cache: HttpJsonCache = request.app.state.oidc_cache
    return cache


IpLimited = Annotated[None, Depends(ip_limited)]
CacheDep = Annotated[HttpJsonCache, Depends(oidc_cache)]


def _callback_url(request: Request, public_url: str | None) -> str:
    base = public_url or str(request.base_url).rstrip("/")
    return base + service.CALLBACK_PATH


@router.get(
    "/callback",
    status_code=status.HTTP_302_FOUND,
    response_class=RedirectResponse,
    responses={302: {"description": "to the client's loopback redirect_uri with code or error"}},
)
async def sign_in_callback(
    request: Request,
    _limited: IpLimited,
    pool: PoolDep,
    cache: CacheDep,
    settings: SettingsDep,
    state: Annotated[str | None, Query(max_length=512)] = None,
    code: Annotated[str | None, Query(max_length=2048)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
    iss: Annotated[str | None, Query(max_length=512)] = None,
) -> RedirectResponse:
    """Where the identity provider sends the browser back."""
    redact_current_span()
    target = await service.callback(
        pool,
        cache,
        settings,
        service.CallbackParams(state=state, code=code, error=error, iss=iss),
        callback_url=_callback_url(request, settings.api_public_url),
    )
    return RedirectResponse(target, status_code=status.HTTP_302_FOUND, headers=NO_STORE)


@router.post("/token")
async def sign_in_token(
    body: SignInTokenRequest,
    _limited: IpLimited,
    pool: PoolDep,
    publisher: PublisherDep,
    settings: SettingsDep,
    response: Response,
) -> SignInTokenCreated:
    """Exchange the one-time code and the PKCE verifier for a token."""
    response.headers.update(NO_STORE)
    return await service.exchange(pool, publisher, settings, body)


@router.delete("/token", status_code=status.HTTP_204_NO_CONTENT)
async def sign_out(request: Request, pool: PoolDep, publisher: PublisherDep) -> Response:
    """Sign out: revoke the bearer token of the request (a client token or an admin
    session's API token)."""
    grant = await verify_bearer(request, frozenset({"client", "api"}))
    await service.sign_out(pool, publisher, grant)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{account_slug}",
    status_code=status.HTTP_302_FOUND,
    response_model=SignInStarted,
    responses={
        200: {"description": "with Accept: application/json", "model": SignInStarted},
        302: {"description": "to the identity provider"},
    },
)
async def start_sign_in(
    request: Request,
    _limited: IpLimited,
    pool: PoolDep,
    cache: CacheDep,
    settings: SettingsDep,
    account_slug: Annotated[str, Path(max_length=63)],
    redirect_uri: Annotated[str, Query(max_length=2048)],
    code_challenge: Annotated[CodeChallenge, Query()],
    code_challenge_method: Annotated[  # noqa: ARG001 - validated: S256 is the only one
        str, Query(pattern="^S256$")
    ] = "S256",
    provider: uuid.UUID | None = None,
    kind: SignInKind = "client",
    state: Annotated[ClientState | None, Query()] = None,
) -> Response:
    """Start a sign-in: 302 to the identity provider (or, with ``Accept:
    application/json``, ``{"authorization_url", "expires_at"}`` to open in a browser)."""
    started = await service.start(
        pool,
        cache,
        settings,
        account_slug=account_slug,
        provider_id=provider,
        kind=kind,
        redirect_uri=redirect_uri,
        code_challenge=code_challenge,
        client_state=state,
        callback_url=_callback_url(request, settings.api_public_url),
    )
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(started.model_dump(mode="json"), headers=NO_STORE)
    return RedirectResponse(
        started.authorization_url, status_code=status.HTTP_302_FOUND, headers=NO_STORE
    )

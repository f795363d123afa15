"""The FastAPI application of the control plane.

``create_app(settings)`` builds the app; its lifespan opens the asyncpg pool
(applying migrations first unless ``ZG_MIGRATE_ON_START=false``), connects the
bus (giving up after ``ZG_NATS_CONNECT_TIMEOUT`` with a :class:`ConfigError` that
names ``ZG_NATS_URL``), and starts the NATS request handlers of :mod:`zerogate.api.bushandlers`
(its ``subscribe(bus, pool, settings)`` if the module provides one), and sweeps
full rate-limit buckets and expired sign-ins every minute. Tests may hand in a
ready pool and bus; the app then neither opens nor closes them.

Outermost of ours, :class:`~zerogate.api.middleware.RequestContextMiddleware`
gives each request its id and context (the audit log's writer) and refuses
bodies over ``ZG_MAX_BODY_BYTES``. ``app.state`` holds the rate limiter
(:mod:`zerogate.api.ratelimit.limiter`) and the identity providers' discovery
and JWKS cache (:class:`zerogate.api.sign_in.oidc.HttpJsonCache`).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from zerogate.api import db, problems
from zerogate.api.accounts.router import router as accounts_router
from zerogate.api.actors.router import router as actors_router
from zerogate.api.audit import service as audit
from zerogate.api.audit.router import router as audit_router
from zerogate.api.auth_providers.router import router as auth_providers_router
from zerogate.api.clients.router import router as clients_router
from zerogate.api.groups.router import router as groups_router
from zerogate.api.middleware import RequestContextMiddleware
from zerogate.api.policies.router import router as policies_router
from zerogate.api.ratelimit import repository as rate_buckets
from zerogate.api.ratelimit.limiter import RateLimiter
from zerogate.api.relays.router import router as relays_router
from zerogate.api.resources.router import router as resources_router
from zerogate.api.settings import ApiSettings
from zerogate.api.sign_in import repository as sign_ins
from zerogate.api.sign_in.oidc import HttpJsonCache
from zerogate.api.sign_in.router import router as sign_in_router
from zerogate.api.sign_in.service import KEEP_USED_CODES_SECS
from zerogate.api.sites.router import router as sites_router
from zerogate.api.tokens.router import router as tokens_router
from zerogate.common.bus import Bus, BusError
from zerogate.common.errors import ConfigError

log = logging.getLogger(__name__)

HEALTH_TIMEOUT: Final = 2
#: Seconds between sweeps of full rate-limit buckets and expired sign-ins.
HOUSEKEEPING_INTERVAL: Final = 60.0
ROUTERS: Final = (
    accounts_router,
    actors_router,
    groups_router,
    sites_router,
    resources_router,
    policies_router,
    clients_router,
    tokens_router,
    relays_router,
    auth_providers_router,
    sign_in_router,
    audit_router,
)


def _bus_handlers() -> Callable[..., Awaitable[Any]] | None:
    try:
        module = importlib.import_module("zerogate.api.bushandlers")
    except ModuleNotFoundError:
        return None
    handler = getattr(module, "subscribe", None)
    return handler if callable(handler) else None


def create_app(
    settings: ApiSettings,
    *,
    pool: db.Pool | None = None,
    bus: Bus | None = None,
    bus_handlers: bool = True,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned_pool = pool is None
        owned_bus = bus is None and settings.nats_url is not None
        dsn = settings.database_url.get_secret_value()
        if owned_pool and settings.migrate_on_start:
            await db.migrate_url(dsn)
        app.state.pool = pool or await db.create_pool(
            dsn, min_size=settings.db_pool_min, max_size=settings.db_pool_max
        )
        app.state.bus = bus
        try:
            if owned_bus and settings.nats_url is not None:
                app.state.bus = await _connect_bus(settings.nats_url, settings)
            subscribe = _bus_handlers() if bus_handlers and app.state.bus is not None else None
            if subscribe is not None:
                await subscribe(app.state.bus, app.state.pool, settings)
            housekeeping = asyncio.create_task(
                _housekeeping(app.state.pool, app.state.limiter), name="api-housekeeping"
            )
            try:
                yield
            finally:
                housekeeping.cancel()
                await asyncio.gather(housekeeping, return_exceptions=True)
        finally:
            await app.state.oidc_cache.http.aclose()
            if owned_bus and app.state.bus is not None:
                await app.state.bus.close()
            if owned_pool:
                await app.state.pool.close()

    app = FastAPI(
        title="Zerogate API",
        version="1",
        summary="Zero-trust network access: the admin REST API of the control plane.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.pool = pool
    app.state.bus = bus
    app.state.limiter = RateLimiter.from_settings(settings)
    app.state.oidc_cache = HttpJsonCache(
        httpx.AsyncClient(timeout=settings.oidc_timeout, follow_redirects=False),
        timeout=settings.oidc_timeout,
    )
    problems.install(app)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(
        RequestContextMiddleware, max_body_bytes=settings.max_body_bytes, audit=audit.write
    )

    @app.get("/healthz", tags=["health"], responses={503: {"description": "a dependency is down"}})
    async def healthz(request: Request) -> JSONResponse:
        checks = {"postgres": await _postgres_ok(request.app.state.pool)}
        current_bus = request.app.state.bus
        checks["nats"] = current_bus is not None and await _nats_ok(current_bus)
        if all(checks.values()):
            return JSONResponse({"status": "ok", "checks": checks})
        return problems.problem(503, "a dependency is not answering", checks=checks)

    try:
        from zerogate.common.telemetry import instrument_fastapi

        instrument_fastapi(app)
    except ImportError:  # pragma: no cover - telemetry extras missing
        log.debug("FastAPI instrumentation unavailable")
    return app


async def _connect_bus(url: str, settings: ApiSettings) -> Bus:
    """Connect within ``ZG_NATS_CONNECT_TIMEOUT``. Without a bound, start-up would wait
    forever, and uvicorn does not act on SIGTERM until start-up is over."""
    try:
        return await Bus.connect(url, name="api", timeout=settings.nats_connect_timeout)
    except BusError as exc:
        raise ConfigError(
            f"cannot use the bus of ZG_NATS_URL within ZG_NATS_CONNECT_TIMEOUT="
            f"{settings.nats_connect_timeout:g}s ({exc.detail})"
        ) from exc


async def _housekeeping(pool: db.Pool, limiter: RateLimiter) -> None:
    """Forget full rate-limit buckets and expired sign-ins, every minute."""
    while True:
        await asyncio.sleep(HOUSEKEEPING_INTERVAL)
        try:
            async with pool.acquire() as conn:
                await rate_buckets.forget_full(conn, limiter.refill_secs())
                await sign_ins.forget_expired(conn, keep_used_codes_secs=KEEP_USED_CODES_SECS)
        except Exception:
            log.warning("housekeeping failed; next try in a minute", exc_info=True)


async def _postgres_ok(pool: db.Pool | None) -> bool:
    if pool is None:
        return False
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT), pool.acquire() as conn:
            return bool(await conn.fetchval("SELECT 1") == 1)
    except Exception:
        return False


async def _nats_ok(bus: Bus) -> bool:
    if not bus.is_connected:
        return False
    try:
        await bus.flush(timeout=HEALTH_TIMEOUT)
    except Exception:
        return False
    return True

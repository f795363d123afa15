"""The FastAPI edge: ``/v1/client`` and ``/v1/gateway`` WebSockets, ``/healthz``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, WebSocket
from fastapi.responses import JSONResponse

from zerogate.common.bus import Bus
from zerogate.signaling import __version__
from zerogate.signaling.hub import Hub
from zerogate.signaling.settings import SignalingSettings

log = logging.getLogger(__name__)


def create_app(settings: SignalingSettings) -> FastAPI:
    """The app; it joins the bus on start-up and tells agents to move on at shutdown."""
    state: dict[str, Hub] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        assert settings.nats_url is not None
        bus = await Bus.connect(
            settings.nats_url, name=f"signaling-{settings.signaling_instance_id}"
        )
        hub = Hub(settings, bus)
        await hub.start()
        state["hub"] = hub
        log.info("signaling started", extra={"instance": hub.instance})
        try:
            yield
        finally:
            await hub.close()
            await bus.close()
            log.info("signaling stopped", extra={"instance": hub.instance})

    app = FastAPI(
        title="Zerogate signaling",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        hub = state.get("hub")
        if hub is None or hub.closing:
            return JSONResponse({"status": "starting"}, status_code=503)
        body = hub.health()
        ok = bool(body["bus"])
        return JSONResponse(
            {"status": "ok" if ok else "degraded", **body}, status_code=200 if ok else 503
        )

    @app.websocket("/v1/client")
    async def client(ws: WebSocket) -> None:
        await state["hub"].serve(ws, "client")

    @app.websocket("/v1/gateway")
    async def gateway(ws: WebSocket) -> None:
        await state["hub"].serve(ws, "gateway")

    return app

"""The HTTP and WebSocket routes of the capture service, on one port."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute

from capture.deepgram_live import listen_endpoint
from capture.deepgram_prerecorded import listen_file
from capture.echopanel import live_listener
from capture.hub import Hub
from capture.library_proxy import library
from capture.native import stream_endpoint
from capture.openai_realtime import realtime_endpoint
from capture.openai_transcriptions import create_transcription as openai_transcription
from capture.openapi import openapi
from capture.session_audio import source_audio
from capture.uploads import create_transcription, get_transcription
from capture.web_page import browser_token, cors_middleware, index, page_config, static_files

SERVICE = "echostream-capture"


async def health(request: Request) -> JSONResponse:
    """EchoPanel adopts a server whose ``/health`` says ``ok`` within 0.25 s."""
    hub: Hub = request.app.state.hub
    if not hub.bus.nc.is_connected:
        reason = "message bus (NATS) unreachable"
        body = {"status": "unavailable", "service": SERVICE, "detail": {"reason": reason}}
        return JSONResponse(body, status_code=503)
    engine = hub.settings.echopanel_engine
    return JSONResponse(
        {
            "status": "ok",
            "service": SERVICE,
            "provider": "echostream",
            "model": engine,
            "workers": hub.workers.workers(engine),
            "connections": hub.connections.open,
        }
    )


def build_app(hub: Hub) -> Starlette:
    """The ASGI application serving ``hub``."""
    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            WebSocketRoute("/ws/live-listener", live_listener),
            WebSocketRoute("/v1/stream", stream_endpoint),
            Route("/v1/transcriptions", create_transcription, methods=["POST"]),
            Route("/v1/transcriptions/{session_id}", get_transcription, methods=["GET"]),
            WebSocketRoute("/v1/listen", listen_endpoint),
            Route("/v1/listen", listen_file, methods=["POST"]),
            WebSocketRoute("/v1/realtime", realtime_endpoint),
            Route("/v1/audio/transcriptions", openai_transcription, methods=["POST"]),
            Route("/", index, methods=["GET"]),
            Mount("/web", static_files(), name="web"),
            Route("/v1/web/config", page_config, methods=["GET"]),
            Route("/v1/browser-token", browser_token, methods=["POST"]),
            Route(
                "/v1/library/sessions/{session_id}/audio/{source}.wav",
                source_audio,
                methods=["GET"],
            ),
            Route("/v1/library/{path:path}", library, methods=["GET", "DELETE"]),
        ],
        middleware=cors_middleware(hub.settings),
    )
    app.state.hub = hub
    return app

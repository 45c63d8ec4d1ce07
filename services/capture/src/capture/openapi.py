"""The OpenAPI description of capture's HTTP routes, served at ``/openapi.json``.

The WebSocket protocols (EchoPanel, native, OpenAI Realtime, Deepgram live) are not expressible
in OpenAPI; the service README and docs/clients-*.md describe them. The library proxy mirrors the
aggregator's own API, documented by the aggregator.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

Schema = dict[str, Any]

DETAIL: Schema = {
    "type": "object",
    "required": ["detail"],
    "properties": {"detail": {"type": "string"}},
}
OPENAI_ERROR: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
DEEPGRAM_ERROR: Schema = {
    "type": "object",
    "required": ["err_code", "err_msg", "request_id"],
    "properties": {
        "err_code": {"type": "string"},
        "err_msg": {"type": "string"},
        "request_id": {"type": "string"},
    },
}
TRANSCRIPTION: Schema = {
    "type": "object",
    "required": ["id", "status"],
    "properties": {
        "id": {"type": "string"},
        "status": {"type": "string", "enum": ["processing", "done", "failed"]},
        "failure": {"type": "string"},
        "engine": {"type": "string"},
        "duration_s": {"type": "number"},
        "text": {"type": "string"},
        "segments": {"type": "array", "items": {"type": "object"}},
        "status_url": {"type": "string"},
    },
}
AUDIO_BODY: Schema = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary"}},
        }
    },
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(schema: Schema, *codes: int) -> dict[str, Schema]:
    return {str(code): _json(schema, "refused; the body says why") for code in codes}


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


BEARER: list[dict[str, list[str]]] = [{"bearer": []}]

DOCUMENT: Schema = {
    "openapi": "3.0.3",
    "info": {
        "title": "EchoStream capture",
        "version": "1.0",
        "description": "File transcription (native, OpenAI- and Deepgram-compatible), health, "
        "and the browser page's token exchange. The WebSocket protocols are described in the "
        "service README.",
    },
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
        }
    },
    "paths": {
        "/health": {
            "get": {
                "summary": "Whether capture is up and reaches NATS",
                "responses": {
                    "200": _json({"type": "object", "required": ["status"]}, "healthy"),
                    "503": _json({"type": "object", "required": ["status"]}, "NATS unreachable"),
                },
            }
        },
        "/v1/transcriptions": {
            "post": {
                "summary": "Transcribe a file (multipart field `file`, or the raw body)",
                "security": BEARER,
                "parameters": [
                    _query("engine", {"type": "string"}, "engine of the response"),
                    _query("wait", {"type": "string"}, "false: answer 202 at once"),
                ],
                "requestBody": {"required": True, "content": AUDIO_BODY},
                "responses": {
                    "200": _json(TRANSCRIPTION, "transcribed"),
                    "202": _json(TRANSCRIPTION, "still processing; poll status_url"),
                    "502": _json(TRANSCRIPTION, "the engine failed: status failed, and why"),
                    **_errors(DETAIL, 400, 401, 413, 415),
                },
            }
        },
        "/v1/transcriptions/{session_id}": {
            "get": {
                "summary": "A transcription as the aggregator stored it",
                "security": BEARER,
                "parameters": [
                    {
                        "name": "session_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    _query("engine", {"type": "string"}, "engine of the response"),
                ],
                "responses": {
                    "200": _json(TRANSCRIPTION, "found"),
                    **_errors(DETAIL, 400, 401, 404, 503),
                },
            }
        },
        "/v1/audio/transcriptions": {
            "post": {
                "summary": "OpenAI-compatible transcription of a file",
                "security": BEARER,
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["file", "model"],
                                "properties": {
                                    "file": {"type": "string", "format": "binary"},
                                    "model": {"type": "string"},
                                    "language": {"type": "string"},
                                    "prompt": {"type": "string"},
                                    "response_format": {
                                        "type": "string",
                                        "enum": ["json", "text", "srt", "vtt", "verbose_json"],
                                    },
                                    "temperature": {"type": "number"},
                                    "timestamp_granularities[]": {
                                        "type": "array",
                                        "items": {"type": "string", "enum": ["word", "segment"]},
                                    },
                                    "stream": {"type": "boolean"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "the transcript in the requested format",
                        "content": {
                            "application/json": {"schema": {"type": "object"}},
                            "text/plain": {"schema": {"type": "string"}},
                            "text/vtt": {"schema": {"type": "string"}},
                            "text/event-stream": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(OPENAI_ERROR, 400, 401, 413, 415, 502),
                },
            }
        },
        "/v1/listen": {
            "post": {
                "summary": "Deepgram-compatible prerecorded transcription",
                "security": BEARER,
                "parameters": [
                    _query("model", {"type": "string"}, "engine, when it names one"),
                    _query("encoding", {"type": "string"}, "raw audio encoding"),
                    _query("sample_rate", {"type": "integer"}, "raw audio rate"),
                    _query("channels", {"type": "integer"}, "raw audio channels"),
                    _query("utterances", {"type": "boolean"}, "results.utterances"),
                    _query("punctuate", {"type": "boolean"}, "punctuated words and text"),
                    _query("smart_format", {"type": "boolean"}, "as punctuate"),
                    _query("language", {"type": "string"}, "accepted"),
                ],
                "requestBody": {"required": True, "content": AUDIO_BODY},
                "responses": {
                    "200": _json({"type": "object", "required": ["metadata", "results"]}, "done"),
                    **_errors(DEEPGRAM_ERROR, 400, 401, 413, 502, 504),
                },
            }
        },
        "/v1/web/config": {
            "get": {
                "summary": "What the browser page needs before signing in",
                "responses": {"200": _json({"type": "object", "required": ["auth"]}, "config")},
            }
        },
        "/v1/browser-token": {
            "post": {
                "summary": "Trade the capture token (header) for a short-lived browser token",
                "security": BEARER,
                "responses": {
                    "200": _json({"type": "object", "required": ["token", "expires_at"]}, "minted"),
                    **_errors(DETAIL, 401),
                },
            }
        },
    },
}


async def openapi(_request: Request) -> JSONResponse:
    return JSONResponse(DOCUMENT)

"""Translations shared by the insights page and the insights API: rate-limit headers and SSE frames."""

import json

from django.http import HttpResponse

from insights.ratelimit import Window

POLICY = "insights"


def add_ratelimit_headers(response: HttpResponse, window: Window) -> HttpResponse:
    """IETF RateLimit fields: `RateLimit-Policy: "insights";q=200;w=3600` and `RateLimit: "insights";r=17;t=1800`."""
    response["RateLimit-Policy"] = f'"{POLICY}";q={window.limit};w={window.window_seconds}'
    response["RateLimit"] = f'"{POLICY}";r={window.remaining};t={window.reset_seconds}'
    return response


def window_json(window: Window) -> dict:
    return {"limit": window.limit, "remaining": window.remaining, "resetSeconds": window.reset_seconds}


def sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()

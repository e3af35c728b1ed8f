"""The reference UI: `/` and its two assets from api/static (no build step,
nothing from another host; the Content-Security-Policy allows only this origin)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

from api.problems import not_found

STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(include_in_schema=False)

CONTENT_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
        " img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _asset(name: str) -> Response:
    media_type = CONTENT_TYPES.get(name)
    path = STATIC / name
    if media_type is None or not path.is_file():
        raise not_found(f"no asset {name}")
    return Response(path.read_bytes(), headers={**HEADERS, "Content-Type": media_type})


@router.api_route("/", methods=["GET", "HEAD"])
def index() -> Response:
    return _asset("index.html")


@router.api_route("/static/{name}", methods=["GET", "HEAD"])
def static_asset(name: str) -> Response:
    if name == "index.html":
        raise not_found(f"no asset {name}")
    return _asset(name)

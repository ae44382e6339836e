"""The operator web interface: static files the head-end serves at ``/ui/``, talking to its REST API.

Everything the browser loads comes from this package (no CDN, no build step): ``index.html``, one
stylesheet and ES modules under ``static/js``. Charts are SVG drawn by ``js/chart.js``. Every
response carries a Content-Security-Policy that allows only this origin, so an injected script or
a foreign resource is refused by the browser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.web import resource, util

__all__ = ["STATIC", "UiFiles", "root_redirect"]

STATIC = Path(__file__).parent / "static"

SECURITY_HEADERS = {
    b"Content-Security-Policy": b"default-src 'self'; img-src 'self' data:; style-src 'self'; "
    b"script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    b"form-action 'self'",
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
    b"X-Frame-Options": b"DENY",
}

CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
}


class UiFiles(resource.Resource):
    """The files under ``folder``, read-only: GET and HEAD of a known file type, never a path
    outside the folder, no directory listings; the security headers on every answer."""

    isLeaf = True  # noqa: N815 (Twisted's name)

    def __init__(self, folder: Path = STATIC) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.folder = folder.resolve()

    def _file(self, request: Any) -> Path | None:
        parts = [bytes(p).decode("utf-8", "replace") for p in request.postpath]
        if not parts or parts == [""]:
            parts = ["index.html"]
        if any(p in ("", ".", "..") or "/" in p or "\\" in p for p in parts):
            return None
        path = self.folder.joinpath(*parts).resolve()
        if not path.is_relative_to(self.folder) or not path.is_file():
            return None
        return path if path.suffix in CONTENT_TYPES else None

    def render_GET(self, request: Any) -> bytes:  # noqa: N802 (Twisted's name)
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        if not request.postpath:  # "/ui": the page's relative links need "/ui/"
            request.redirect(b"/ui/")
            return b""
        path = self._file(request)
        if path is None:
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"no such page\n"
        request.setHeader(b"Content-Type", CONTENT_TYPES[path.suffix])
        # small files that must follow a head-end upgrade at once: revalidated on every load
        request.setHeader(b"Cache-Control", b"no-cache")
        return path.read_bytes()

    render_HEAD = render_GET  # noqa: N815 (Twisted's name)


def root_redirect() -> resource.Resource:
    """``/`` sends a browser to the interface."""
    return util.Redirect(b"/ui/")

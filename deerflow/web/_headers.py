"""Security headers on every answer of the server: pages, the API, ``/metrics``, webhooks, errors.

They are set when a response is prepared (``on_response_prepare``) rather than by a middleware,
so they also reach the answers no handler made: aiohttp's own 404 and 405, and the 413 of a body
over the limit. The dashboard needs no inline script or style (its code and CSS are static
files), so the policy allows scripts and styles from this origin only.
"""

from __future__ import annotations

from aiohttp import web

#: What a page may load: its own scripts, styles and images (the graph is inline SVG markup,
#: not an image), nothing framed, no plugins, forms posted back to this origin only.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    )
)

_ALWAYS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def secure_transport(request: web.BaseRequest) -> bool:
    """Whether the browser reached the server over https (directly or through a TLS proxy)."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


async def add_security_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """Set the headers on ``response``; static files alone may be cached."""
    for name, value in _ALWAYS.items():
        response.headers.setdefault(name, value)
    static = "/static/" in request.path and response.status in (200, 304)
    if not static:
        # Pages and answers carry runs' data and are behind the API key: never stored.
        response.headers["Cache-Control"] = "no-store"
    if secure_transport(request):
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")


def protect(app: web.Application) -> None:
    """Add the headers to every answer ``app`` (and its sub-applications) sends."""
    if add_security_headers not in app.on_response_prepare:
        app.on_response_prepare.append(add_security_headers)

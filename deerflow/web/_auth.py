"""API-key protection of the dashboard, the JSON API and ``/metrics``.

The keys are the webhook gateway's (``DEERFLOW_API_KEYS`` or ``[gateway] api_keys``); with no
key configured everything is open, as the webhooks are. A program presents a key as
``X-API-Key`` or ``Authorization: Bearer``. A browser signs in once on the dashboard's form and
then carries a session cookie (:mod:`._session`: signed, expiring, HttpOnly, SameSite=Strict,
Secure over https), never the key itself; ``POST /ui/logout`` signs out. Form posts from a
browser must come from the dashboard's own origin, so another site cannot make a signed-in
browser cancel runs.
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from deerflow.connectors import ApiKeys
from deerflow.connectors.integration import presented_key, unauthorized
from deerflow.web import _session
from deerflow.web._headers import secure_transport

LOGIN_FORM = """<!doctype html><html><head><meta charset="utf-8"><title>deerflow · sign in</title>
<link rel="stylesheet" href="{prefix}/static/dashboard.css"></head><body><main class="login">
<h1>deerflow</h1><p>{message}</p>
<form method="post" action="{prefix}/login"><label>API key
<input type="password" name="api_key" autocomplete="current-password" autofocus></label>
<input type="hidden" name="next" value="{next}"><button type="submit">Sign in</button></form>
</main></body></html>"""


def authorized(request: web.Request, keys: ApiKeys) -> bool:
    """Whether ``request`` presents an accepted key, or a valid session of one (a browser)."""
    return keys.accepts(presented_key(request.headers)) or _session.verify(
        request.cookies.get(_session.COOKIE), keys.values()
    )


def cross_site(request: web.Request) -> bool:
    """Whether a state-changing request comes from another origin (a CSRF attempt)."""
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        return True
    origin = request.headers.get("Origin")
    return bool(origin) and origin != "null" and urlsplit(origin).netloc != request.host


def login_page(prefix: str, message: str, next_url: str, status: int = 401) -> web.Response:
    """The sign-in form."""
    body = LOGIN_FORM.format(prefix=prefix, message=escape(message), next=escape(next_url))
    return web.Response(status=status, text=body, content_type="text/html")


def require_key(
    keys: ApiKeys,
    *,
    html_prefix: str | None = None,
    open_paths: frozenset[str] = frozenset(),
    open_prefixes: tuple[str, ...] = (),
) -> Middleware:
    """A middleware refusing requests without an accepted key (when keys are configured).

    ``html_prefix`` makes refusals a sign-in page (the dashboard) instead of JSON (the API).
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if not keys or path in open_paths or path.startswith(open_prefixes):
            return await handler(request)
        if not authorized(request, keys):
            if html_prefix is not None:
                return login_page(
                    html_prefix, "Enter an API key to see this deployment.", request.path_qs
                )
            return unauthorized()
        return await handler(request)

    return middleware


def _local_target(target: str, prefix: str) -> str:
    # Only a path of this server: "//host", "/\\host" and schemes would lead off-site.
    if not target.startswith("/") or target.startswith(("//", "/\\")) or "\\" in target:
        return f"{prefix}/"
    return target


def login_handler(keys: ApiKeys, prefix: str, ttl: float) -> Handler:
    """``POST {prefix}/login``: check the key, start a session, go where the user was going."""

    async def login(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        key = str(form.get("api_key", ""))
        target = _local_target(str(form.get("next", "")) or f"{prefix}/", prefix)
        if cross_site(request) or not keys.accepts(key):
            return login_page(prefix, "That key is not accepted.", target)
        response = web.Response(status=303, headers={"Location": target})
        response.set_cookie(
            _session.COOKIE,
            _session.issue(key, ttl),
            max_age=int(ttl),
            httponly=True,
            samesite="Strict",
            secure=secure_transport(request),
            path="/",
        )
        return response

    return login


def logout_handler(prefix: str) -> Handler:
    """``POST {prefix}/logout``: forget the session and show the sign-in form."""

    async def logout(request: web.Request) -> web.StreamResponse:
        if cross_site(request):
            raise web.HTTPForbidden(text="cross-site form posts are refused")
        response = web.Response(status=303, headers={"Location": f"{prefix}/"})
        response.del_cookie(_session.COOKIE, path="/")
        return response

    return logout

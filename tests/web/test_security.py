"""What a browser gets from the server: security headers on every answer, and sign-in sessions
that are signed, expire, end on sign-out and do not outlive their key. Over real HTTP."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from deerflow.web import _session
from tests.services import unique_name
from tests.web.conftest import Deployment, deploy

KEY = "ops-key-1"


@pytest.fixture
async def keyed(isolated: Path) -> AsyncIterator[Deployment]:
    """A deployment whose dashboard and API need the key ``KEY``."""
    async for served in deploy(f"memory://{unique_name('sec')}", isolated, [KEY]):
        yield served


def browser() -> aiohttp.ClientSession:
    """A client that keeps cookies of an IP address, as browsers do."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def sign_in(http: aiohttp.ClientSession, url: str, key: str = KEY, **headers: str) -> str:
    """Post the sign-in form; the ``Set-Cookie`` header of the answer."""
    async with http.post(
        url + "/ui/login",
        data={"api_key": key, "next": "/ui/dlq"},
        allow_redirects=False,
        headers=headers,
    ) as reply:
        assert reply.status == 303, await reply.text()
        assert reply.headers["Location"] == "/ui/dlq"
        return reply.headers["Set-Cookie"]


async def status_with_cookie(url: str, token: str, path: str = "/ui/") -> tuple[int, str]:
    """GET ``path`` carrying only the session cookie ``token``."""
    async with aiohttp.ClientSession() as http:
        headers = {"Cookie": f"{_session.COOKIE}={token}"}
        async with http.get(url + path, headers=headers, allow_redirects=False) as reply:
            return reply.status, await reply.text()


SECURED = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


@pytest.mark.parametrize(
    "path",
    [
        "/ui/",
        "/ui/dlq",
        "/ui/triggers",
        "/ui/runs/nope",
        "/api/runs",
        "/api/runs/nope",
        "/api/openapi.json",
        "/metrics",
        "/no/such/page",
        "/runs/nope",
    ],
)
async def test_every_answer_carries_the_security_headers(deployment: Deployment, path: str):
    async with deployment.session.get(deployment.url + path, allow_redirects=False) as reply:
        await reply.read()
        for name, value in SECURED.items():
            assert reply.headers.get(name) == value, (path, name)
        policy = reply.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        assert reply.headers["Cache-Control"] == "no-store"
        assert "Strict-Transport-Security" not in reply.headers  # plain http


async def test_static_files_are_cacheable_and_a_webhook_answer_is_secured(deployment: Deployment):
    async with deployment.session.get(deployment.url + "/ui/static/dashboard.js") as reply:
        assert reply.status == 200 and "no-store" not in reply.headers.get("Cache-Control", "")
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
    async with deployment.session.post(deployment.url + "/hooks/etl", data=b"{oops") as reply:
        assert reply.status == 400
        assert reply.headers["X-Frame-Options"] == "DENY"
    async with deployment.session.post(deployment.url + "/api/runs") as reply:
        assert reply.status == 405 and reply.headers["Cache-Control"] == "no-store"


async def test_pages_load_no_inline_script_or_style(deployment: Deployment):
    async with deployment.session.get(deployment.url + "/ui/") as reply:
        page = await reply.text()
    assert "<script defer src=" in page and "<script>" not in page
    assert "<style" not in page and " style=" not in page and " on" + "click=" not in page


async def test_the_session_cookie_is_signed_expiring_http_only_and_never_the_key(keyed):
    async with browser() as http:
        cookie = await sign_in(http, keyed.url)
        assert cookie.startswith(f"{_session.COOKIE}=") and KEY not in cookie
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=28800" in cookie
        assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
        async with http.get(keyed.url + "/ui/dlq") as reply:
            assert reply.status == 200 and "<h1>Dead letters</h1>" in await reply.text()
        async with http.get(keyed.url + "/api/runs") as reply:
            assert reply.status == 200  # the dashboard's own fetches
        async with http.get(keyed.url + "/metrics") as reply:
            assert reply.status == 200
    async with browser() as http:
        cookie = await sign_in(http, keyed.url, **{"X-Forwarded-Proto": "https"})
        assert "Secure" in cookie  # behind a TLS proxy


async def test_a_tampered_expired_or_foreign_session_asks_to_sign_in_again(keyed):
    good = _session.issue(KEY, 60)
    assert (await status_with_cookie(keyed.url, good))[0] == 200
    version, kid, expiry, signature = good.split(".")
    later = str(int(expiry) + 86400)
    tampered = [
        f"{version}.{kid}.{later}.{signature}",  # a longer life, same signature
        f"{version}.{kid}.{expiry}.{signature[:-1]}{'0' if signature[-1] != '0' else '1'}",
        f"{version}.{kid}.{expiry}",
        KEY,  # the raw key in the cookie is no longer a session
        "",
    ]
    for token in tampered:
        status, text = await status_with_cookie(keyed.url, token)
        assert status == 401 and "Enter an API key" in text, token
    expired = _session.issue(KEY, 60, now=time.time() - 120)
    assert (await status_with_cookie(keyed.url, expired))[0] == 401
    assert (await status_with_cookie(keyed.url, expired, "/api/runs"))[0] == 401
    rotated_away = _session.issue("an-old-key", 3600)  # a key no longer configured
    assert (await status_with_cookie(keyed.url, rotated_away))[0] == 401


async def test_signing_out_ends_the_session(keyed):
    async with browser() as http:
        await sign_in(http, keyed.url)
        async with http.get(keyed.url + "/ui/") as reply:
            assert 'action="/ui/logout"' in await reply.text()
        async with http.post(
            keyed.url + "/ui/logout", headers={"Origin": "http://evil.example"}
        ) as reply:
            assert reply.status == 403  # another site cannot sign the user out either
        async with http.post(keyed.url + "/ui/logout", allow_redirects=False) as reply:
            assert reply.status == 303 and reply.headers["Location"] == "/ui/"
            assert f'{_session.COOKIE}=""' in reply.headers["Set-Cookie"]
        async with http.get(keyed.url + "/ui/") as reply:
            assert reply.status == 401 and "Enter an API key" in await reply.text()


async def test_sign_in_never_redirects_off_site(keyed):
    async with browser() as http:
        for target in ("//evil.example/", "/\\evil.example", "https://evil.example/", "/ui\\x"):
            async with http.post(
                keyed.url + "/ui/login",
                data={"api_key": KEY, "next": target},
                allow_redirects=False,
            ) as reply:
                assert reply.headers["Location"] == "/ui/", target


def test_the_session_lifetime_is_a_positive_number_of_seconds(monkeypatch):
    assert _session.session_ttl() == 8 * 3600
    assert _session.session_ttl(600) == 600
    monkeypatch.setenv(_session.SESSION_TTL_ENV, "90")
    assert _session.session_ttl(600) == 90
    monkeypatch.setenv(_session.SESSION_TTL_ENV, "soon")
    with pytest.raises(ValueError, match="session_ttl must be seconds, not 'soon'"):
        _session.session_ttl()
    monkeypatch.setenv(_session.SESSION_TTL_ENV, "-1")
    with pytest.raises(ValueError, match="must be positive"):
        _session.session_ttl()


async def test_the_sign_in_page_shows_where_the_user_was_going_as_text(keyed):
    trap = '"><script>alert(1)</script>'
    async with keyed.session.get(keyed.url + "/ui/dlq", params={"q": trap}) as reply:
        page = await reply.text()
    assert reply.status == 401 and "<script>alert" not in page
    assert 'name="next" value="/ui/dlq?q=%22%3E%3Cscript%3Ealert(1)%3C/script%3E"' in page

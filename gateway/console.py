"""`/console`: a web console over the REST API, shipped as static files in gateway/console/.

The page signs in with a bearer token it keeps in the browser's session storage and
calls the REST API with it, as any client does: the gateway holds no session for it.
The files are plain ES modules; nothing is built and nothing comes from elsewhere.

Its responses carry a strict Content-Security-Policy: scripts and styles only from
the gateway's own files (no inline code, no eval), no plugins, no framing, forms that
go nowhere (the sign-in form is JavaScript's alone, so a token can never land in a
URL), and Trusted Types with no policy, so that no string can reach an HTML sink
such as innerHTML: upstream response bodies are shown as text, never as markup.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

CONSOLE_DIR = Path(__file__).with_name("console")
PAGE = "/console"
ASSETS = "/console/assets"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    # Served again only once checked (ETag), so a new gateway's files apply at once.
    "Cache-Control": "no-cache",
}


def is_console_path(path: str) -> bool:
    return path == PAGE or path.startswith(f"{PAGE}/")


def add_console(app: web.Application) -> None:
    """The page, its files, and the security headers on every answer under /console."""
    app.router.add_get(PAGE, console_page)
    app.router.add_static(ASSETS, CONSOLE_DIR / "assets")
    app.on_response_prepare.append(_secure)


async def console_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(CONSOLE_DIR / "index.html")


async def _secure(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: errors under /console (a 404 for a missing file) included."""
    if is_console_path(request.path):
        response.headers.update(SECURITY_HEADERS)

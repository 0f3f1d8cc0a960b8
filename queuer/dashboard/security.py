"""Who may see the dashboard and act through it: HTTP basic auth or a bearer token when set,
headers that keep its pages out of other sites' frames and scripts, and a check on every action
that it was sent by one of the dashboard's own pages (not by another site in the same browser)."""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from queuer.model import ConfigurationError

_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


@dataclass(frozen=True)
class Access:
    """The dashboard's access settings. ``csrf_token`` is made anew per app: pages embed it and
    every action must send it back."""

    read_only: bool = False
    basic_auth: tuple[str, str] | None = None
    token: str | None = None
    csrf_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def __post_init__(self) -> None:
        if self.basic_auth is not None:
            user, password = self.basic_auth
            if not user or not password or ":" in user:
                raise ConfigurationError("basic auth needs a user (without ':') and a password")
        if self.token is not None and len(self.token) < 16:
            raise ConfigurationError("a dashboard token has at least 16 characters")

    def allows(self, headers: Headers) -> bool:
        """Whether a request carries the credentials asked for (any, when none are set)."""
        if self.basic_auth is None and self.token is None:
            return True
        scheme, _, value = headers.get("authorization", "").partition(" ")
        scheme = scheme.lower()
        if self.token is not None and scheme == "bearer":
            return hmac.compare_digest(value.strip().encode(), self.token.encode())
        if self.basic_auth is not None and scheme == "basic":
            try:
                given = base64.b64decode(value.strip(), validate=True)
            except (binascii.Error, ValueError):
                return False
            user, password = self.basic_auth
            return hmac.compare_digest(given, f"{user}:{password}".encode())
        return False


class AccessMiddleware:
    """Asks for credentials when set, and adds the protective headers to every answer."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self.access.allows(Headers(scope=scope)):
            challenge = 'Basic realm="queuer", charset="UTF-8"' if self.access.basic_auth else "Bearer"
            answer = PlainTextResponse(
                "authentication required", status_code=401, headers={"WWW-Authenticate": challenge}
            )
            await answer(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def same_origin(request: Request) -> bool:
    """Whether the browser says the request comes from the dashboard's own pages. Browsers send
    ``Sec-Fetch-Site`` or ``Origin`` with every form post; a client without either (curl with a
    token) is judged by the CSRF token alone."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host


def valid_csrf(access: Access, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), access.csrf_token.encode())

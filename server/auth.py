"""API keys on the HTTP service: ``Authorization: Bearer KEY``, as NVIDIA's NIM and BioNeMo clients send it.

    bionemo-lite keys add alice --file keys.json        # prints the key once; the file keeps its hash
    bionemo-lite serve --host 0.0.0.0 --api-keys keys.json

A missing or unknown key is a 401 (with ``WWW-Authenticate: Bearer``), a
disabled one a 403, both with the project's JSON error body. Health probes,
metrics and the OpenAPI docs stay open. Without keys the service only binds a
loopback address, unless told ``--insecure``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from bionemo_lite.errors import BionemoLiteError

from .errors import HTTP_CODES, error_response
from .keyfile import KeyStore
from .ratelimit import CLIENT_STATE, Client, ClientLimiter, Limits, RateLimits
from .responses import SafeJSONResponse
from .settings import Settings

OPEN_PREFIXES = ("/v1/health/",)
OPEN_PATHS = ("/v1/metrics",)
OPEN_PREFIXES += ("/playground",)  # the page itself; its API calls carry the key typed into it
OPEN_PATHS += ("/",)  # redirects to /playground/
REALM = 'Bearer realm="bionemo-lite"'
SCHEME = "apiKey"  # the OpenAPI security scheme's name
MISSING = ("this server needs an API key: send the header 'Authorization: Bearer KEY' "
           "(keys are made with `bionemo-lite keys add NAME --file KEYS`)")


class InsecureBindError(BionemoLiteError):
    """The service was asked to listen beyond this machine without API keys."""


def is_loopback(host: str) -> bool:
    """True when every address `host` names is a loopback one (127.0.0.0/8, ::1, localhost)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    if not host:
        return False  # an empty host binds every interface
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def check_exposure(settings: Settings) -> None:
    """Refuse to serve other machines without keys.

    Raises:
        InsecureBindError: `settings.host` is not a loopback address, no `api_keys` file is set and
            `insecure` is off.
    """
    if settings.api_keys or settings.insecure or is_loopback(settings.host):
        return
    raise InsecureBindError(f"refusing to listen on {settings.host} without API keys: anyone who can reach it could "
                            "use it. Give --api-keys KEYS (see `bionemo-lite keys add`), bind 127.0.0.1, or pass "
                            "--insecure to serve without keys anyway")


def open_path_check(app: FastAPI) -> Callable[[str], bool]:
    """Whether a path is open to all: health probes, the metrics route and the OpenAPI docs."""
    docs = {url for url in (app.docs_url, app.redoc_url, app.openapi_url, app.swagger_ui_oauth2_redirect_url) if url}
    exact = frozenset((*OPEN_PATHS, *docs))
    return lambda path: path in exact or path.startswith(OPEN_PREFIXES)


def bearer_token(headers: Headers) -> str | None:
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _unauthorized(detail: str, challenge: str) -> SafeJSONResponse:
    response = error_response(401, HTTP_CODES[401], detail)
    response.headers["WWW-Authenticate"] = challenge
    return response


class ApiKeyAuth:
    """ASGI middleware: 401/403 unless the request carries an enabled key; the key's `Client`
    (name and limits) goes to ``scope["state"]["api_key"]`` for the limits and the routes."""

    def __init__(self, app: ASGIApp, store: KeyStore, defaults: Limits, is_open: Callable[[str], bool]):
        self.app = app
        self.store = store
        self.defaults = defaults
        self.is_open = is_open

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        token = bearer_token(Headers(scope=scope))
        if token is None:
            await _unauthorized(MISSING, REALM)(scope, receive, send)
            return
        found = self.store.current().match(token)
        if found is None:
            await _unauthorized("the API key is not valid", f'{REALM}, error="invalid_token"')(scope, receive, send)
            return
        name, record = found
        if record.disabled:
            await error_response(403, HTTP_CODES[403], f"API key {name!r} is disabled")(scope, receive, send)
            return
        limits = Limits(
            requests_per_minute=self.defaults.requests_per_minute if record.requests_per_minute is None
            else record.requests_per_minute,
            max_in_flight=self.defaults.max_in_flight if record.max_in_flight is None else record.max_in_flight,
        )
        scope.setdefault("state", {})[CLIENT_STATE] = Client(f"key:{name}", f"key {name!r}", limits)
        await self.app(scope, receive, send)


def document_bearer_keys(app: FastAPI, is_open: Callable[[str], bool]) -> None:
    """Declare the Bearer scheme in the OpenAPI schema on every guarded route, so the docs page's
    "Authorize" button sends the key with "Try it out"."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()  # caches itself in app.openapi_schema: edited once, in place
            schema.setdefault("components", {}).setdefault("securitySchemes", {})[SCHEME] = {
                "type": "http", "scheme": "bearer", "description": "An API key from `bionemo-lite keys add`."}
            for path, operations in schema.get("paths", {}).items():
                if not is_open(path):
                    for operation in operations.values():
                        operation["security"] = [{SCHEME: []}]
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_access_control(app: FastAPI, settings: Settings) -> None:
    """Add the limits, then the key check around them (when `settings.api_keys` is set).

    Call it where the middleware belongs: inside `RequestId` and `UnhandledErrors`, so
    refusals carry the request id, and outside the body limit, so no body is read for them.

    Raises:
        KeyFileError: the key file is missing or malformed.
    """
    is_open = open_path_check(app)
    defaults = Limits(settings.requests_per_minute, settings.max_in_flight)
    app.add_middleware(RateLimits, limiter=ClientLimiter(), defaults=defaults, by_address=settings.limit_by_address,
                       is_open=is_open)
    if settings.api_keys:
        app.add_middleware(ApiKeyAuth, store=KeyStore(settings.api_keys), defaults=defaults, is_open=is_open)
        document_bearer_keys(app, is_open)

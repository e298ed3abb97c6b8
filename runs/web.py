"""A local web page guarded as Jupyter guards a notebook: the base of ``annotate`` and ``view``.

Both servers show dialogues of a store on the researcher's machine; any other web page
the browser has open must not be able to read them (or, for annotation, write labels):

* a random token, new at every start, travels in the page's URL (``?token=``) and comes
  back from the page's script in the ``X-ESC-Eval-Token`` header of every API call
  (compared in constant time); a cross-site page cannot know it, nor send the header
  without a CORS preflight these servers never grant;
* every request must name the bound address in ``Host`` (``localhost`` too when bound to
  loopback), which defeats DNS rebinding; a request whose ``Origin`` is another site is refused;
* a write must be ``application/json`` (what an HTML form cannot send).

Refusals answer 403. Subclasses give ``app_routes`` and ``command`` (named in refusals).
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import secrets
import socket
from collections.abc import Callable
from importlib import resources
from typing import Any

TOKEN_HEADER = "X-ESC-Eval-Token"
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the page's URL carries the token
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
}


PAGE_FILES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
"""The files of a server's page, with their content types."""


def page_file(package: str, name: str) -> str:
    """File ``name`` of ``package``'s page (its ``static/`` folder)."""
    return resources.files(package).joinpath("static", name).read_text(encoding="utf-8")


class LocalServer:
    """Token, Host and Origin checks, security headers, start and stop, for one aiohttp app on one address."""

    command = "esc-eval"
    """The command that prints the address (named in the token refusal)."""
    page_package = ""
    """The package whose ``static/`` folder holds the page (``PAGE_FILES``), served at ``/`` and ``/static/NAME``."""
    error: type[Exception] = ValueError
    """Raised for a bad ``--host``."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, listening: socket.socket | None = None) -> None:
        """``listening``: a socket ``listen`` bound already (a command that must refuse a busy port before it writes anything)."""
        address = _address(host, self.error)
        self.host, self.port = host, port
        self.token = secrets.token_urlsafe(32)
        self._loopback = host == "localhost" or (address is not None and address.is_loopback)
        self._runner: Any = None
        self._listening = listening

    @property
    def authority(self) -> str:
        """``host:port`` as a browser writes it in ``Host`` (IPv6 in brackets)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The address to open: the page with the token."""
        return f"http://{self.authority}/?token={self.token}"

    def refusal(self, request: Any) -> str | None:
        """Why ``request`` is refused (403), or ``None``: the Host, Origin, token and content-type checks."""
        hosts = {self.authority} | ({f"localhost:{self.port}"} if self._loopback else set())
        host = request.headers.get("Host", "")
        if host not in hosts:
            return f"Host {host!r} is not this server's address"
        origin = request.headers.get("Origin")
        if origin is not None and origin not in {f"http://{h}" for h in hosts}:
            return f"Origin {origin!r} is another site"
        if request.path != "/" and not request.path.startswith("/static/"):  # the API, and anything not the page
            given = request.headers.get(TOKEN_HEADER, "").encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(given, self.token.encode()):
                return f"missing or wrong token (open the address {self.command} printed)"
            if request.method == "POST" and request.content_type != "application/json":
                return "label writes must be application/json"
        return None

    def guarded_app(self, routes: Callable[[Any], None], *, max_body: int = 64 * 1024) -> Any:
        """An aiohttp application with the checks as middleware and the headers on every answer; ``routes(app)`` adds the routes."""
        from aiohttp import web

        @web.middleware
        async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
            reason = self.refusal(request)
            if reason is not None:
                return web.json_response({"error": f"forbidden: {reason}"}, status=403)
            return await handler(request)

        async def headers(request: web.Request, response: web.StreamResponse) -> None:
            response.headers.update(HEADERS)

        async def page(request: web.Request) -> web.Response:
            name = request.match_info.get("name", "index.html")
            if name not in PAGE_FILES:
                raise web.HTTPNotFound()
            return web.Response(text=page_file(self.page_package, name), content_type=PAGE_FILES[name])

        app = web.Application(client_max_size=max_body, middlewares=[guard])
        app.on_response_prepare.append(headers)
        app.router.add_get("/", page)
        app.router.add_get("/static/{name}", page)
        routes(app)
        return app

    def app(self) -> Any:
        raise NotImplementedError

    async def start(self) -> None:
        """Listen on ``host:port`` (port 0: a free one, then ``port`` is the bound one)."""
        from aiohttp import web

        listening, self._listening = self._listening or listen(self.host, self.port, self.error), None
        try:
            self._runner = web.AppRunner(self.app(), access_log=None)
            await self._runner.setup()
            await web.SockSite(self._runner, listening).start()
        except BaseException:
            listening.close()
            raise
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def listen(host: str, port: int, error: type[Exception] = ValueError) -> socket.socket:
    """A socket listening on ``host:port`` (0: a free port); ``error`` in one line when the port is taken or the address unusable."""
    _address(host, error)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except OSError as exc:
        raise error(f"--host {host}: cannot resolve it ({exc.strerror or exc})") from None
    listening = socket.socket(family, kind, proto)
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp: a restart need not wait out TIME_WAIT
        listening.bind(address)
        listening.listen(128)
    except OSError as exc:
        listening.close()
        why = ("is in use (another esc-eval view or annotate, or another program); choose another --port, or --port 0 for a free one"
               if exc.errno == errno.EADDRINUSE else f"cannot listen there: {exc.strerror or exc}")
        raise error(f"--port {port}: {host}:{port} {why}") from None
    listening.setblocking(False)
    return listening


def _address(host: str, error: type[Exception]) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as an IP address (``None`` for a name); ``error`` for a wildcard, which the Host check cannot guard."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.is_unspecified:
        raise error(f"--host {host}: give one address to listen on (the Host check needs it), not a wildcard")
    return address

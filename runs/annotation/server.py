"""Human annotation: a small web page for labelling dialogues (``esc-eval annotate``).

``esc-eval annotate STORE`` serves a page on 127.0.0.1 where an annotator, identified by
name, reads a finished dialogue of the store and gives each dimension of a judge profile a
label 0..4, with the rubric shown beside it. Every label is POSTed as it is given and
committed to the store's ``annotations`` table before the server answers, so a reload, a
closed tab or a crashed server loses nothing that the page showed as saved. Who labels
what and the label files are ``runs.annotation.labels``; agreement is ``runs.analysis.agreement``.

The page (``AnnotationServer``) is guarded by a per-start token and Host/Origin checks, and is
blind by default: annotators see an opaque item id (``item_ids``), not which supporter and
persona produced the dialogue (``--unblind`` shows them).

Example::

    with Store.open("run.sqlite") as store:
        store.add_annotations([(key, "ann", "fluency", 3, time.time())])
        export_labels(store, Path("labels.jsonl"))
        result = store_agreement(store)             # judge vs human, alpha, confusion matrices
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from importlib import resources
from pathlib import Path
from typing import Any

from agents.judge.profiles import JudgeProfile
from runs.analysis.agreement import human_labels
from runs.annotation.labels import AnnotationError, assignment, check_label, check_name, export_labels, import_labels
from runs.store import EpisodeRecord, Store

# -- the web page -------------------------------------------------------------------

_STATIC = ("index.html", "app.js", "style.css")
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
TOKEN_HEADER = "X-ESC-Eval-Token"
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the page's URL carries the token
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
}


def _static(name: str) -> str:
    return resources.files("runs.annotation").joinpath("static", name).read_text(encoding="utf-8")


def item_ids(store: Store) -> dict[str, str]:
    """Episode key -> the opaque item id the page shows instead (blinding), for every finished dialogue."""
    secret = _item_secret(store)
    return {e.key: _item_id(secret, e.key) for e in _finished(store)}


def _finished(store: Store) -> list[EpisodeRecord]:
    """The dialogues to annotate: finished episodes with turns, in plan order."""
    return store.episodes(status="done", with_turns=True)


def _item_secret(store: Store) -> str:
    """The store's random secret for item ids, created (in its meta) on the first call on a writable store.

    Kept in the store so that ids stay the same across restarts (a label the browser still
    holds goes to the same dialogue); random so that an id says nothing about the episode key.
    """
    secret = store.meta("annotation_secret")
    if secret is None:
        secret = secrets.token_hex(16)
        store.set_meta(annotation_secret=secret)
    return secret


def _item_id(secret: str, key: str) -> str:
    return hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()[:12]


class AnnotationServer:
    """The labelling page and its JSON API on one address, guarded as Jupyter guards a notebook.

    Labels written here are the ground truth for judge agreement and judge training, so
    any other web page the annotator has open must not be able to write or read them:

    * a random token, new at every start, travels in the page's URL (``?token=``) and comes
      back from the page's script in the ``X-ESC-Eval-Token`` header of every API call
      (compared in constant time); a cross-site page cannot know it, nor send the header
      without a CORS preflight this server never grants;
    * every request must name the bound address in ``Host`` (``localhost`` too when bound to
      loopback), which defeats DNS rebinding; a request whose ``Origin`` is another site is refused;
    * a label write must be ``application/json`` (what an HTML form cannot send).

    Refusals answer 403 and write nothing. With ``blind`` (the default) the page sees an
    opaque item id (``item_ids``) and the language, never the episode key, supporter,
    persona or card; each annotator's queue is in their own shuffled order (``assignment``).
    """

    def __init__(self, store: Store, profile: JudgeProfile, k: int, *, host: str = "127.0.0.1", port: int = 0,
                 blind: bool = True) -> None:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None and address.is_unspecified:
            raise AnnotationError(f"--host {host}: give one address to listen on (the Host check needs it), not a wildcard")
        self.store, self.profile, self.k, self.blind = store, profile, k, blind
        self.host, self.port = host, port
        self.token = secrets.token_urlsafe(32)
        self._secret = _item_secret(store)
        self._loopback = host == "localhost" or (address is not None and address.is_loopback)
        self._runner: Any = None

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
                return "missing or wrong token (open the address esc-eval annotate printed)"
            if request.method == "POST" and request.content_type != "application/json":
                return "label writes must be application/json"
        return None

    def app(self) -> Any:
        """The aiohttp application: the page, ``GET /api/session``, ``GET /api/episode``, ``POST /api/label``.

        The store must be writable; labels are committed synchronously inside the handler
        (SQLite WAL, a millisecond), so the answer means the label is on disk.
        """
        from aiohttp import web

        store, profile = self.store, self.profile

        def fail(status: int, message: str) -> web.Response:
            return web.json_response({"error": message}, status=status)

        @web.middleware
        async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
            reason = self.refusal(request)
            if reason is not None:
                return fail(403, f"forbidden: {reason}")
            return await handler(request)

        async def headers(request: web.Request, response: web.StreamResponse) -> None:
            response.headers.update(_HEADERS)

        def described(e: EpisodeRecord) -> dict[str, Any]:
            """What the page may know of an episode: blind, its item id and language; unblinded, also who made it."""
            shown = {"item": _item_id(self._secret, e.key), "language": e.language}
            if not self.blind:
                shown |= {"key": e.key, "supporter": e.supporter, "persona": e.persona, "card": e.card_id}
            return shown

        def finished() -> dict[str, EpisodeRecord]:
            """Finished episodes by item id."""
            return {_item_id(self._secret, e.key): e for e in _finished(store)}

        async def page(request: web.Request) -> web.Response:
            name = request.match_info.get("name", "index.html")
            if name not in _STATIC:
                raise web.HTTPNotFound()
            return web.Response(text=_static(name), content_type=_TYPES[Path(name).suffix])

        async def session(request: web.Request) -> web.Response:
            try:
                annotator = check_name(request.query.get("annotator"))
            except AnnotationError as exc:
                return fail(400, str(exc))
            episodes = {e.key: e for e in _finished(store)}
            mine = human_labels(store)
            items = [described(episodes[key]) | {"labels": mine.get(key, {}).get(annotator, {})}
                     for key in assignment(store, annotator, self.k)]
            dimensions = [{"key": d.key, "name": d.paper_name, "rubric": dict(d.rubric)} for d in profile.dimensions]
            return web.json_response({"annotator": annotator, "k": self.k, "profile": profile.name, "blind": self.blind,
                                      "dimensions": dimensions, "queue": items})

        async def episode(request: web.Request) -> web.Response:
            item, annotator = request.query.get("item", ""), request.query.get("annotator", "").strip()
            e = finished().get(item)
            if e is None:
                return fail(404, f"no dialogue {item!r}")
            transcript = [{"role": role, "text": text} for role, text in store.transcript(e.key)]
            labels = human_labels(store).get(e.key, {}).get(annotator, {})
            return web.json_response(described(e) | {"transcript": transcript, "labels": labels})

        async def label(request: web.Request) -> web.Response:
            try:
                body = await request.json()
            except ValueError:
                return fail(400, "expected a JSON body")
            if not isinstance(body, dict):
                return fail(400, "expected a JSON object")
            try:
                annotator = check_name(body.get("annotator"))
                value = check_label(body.get("label"), "label")
            except AnnotationError as exc:
                return fail(400, str(exc))
            dim, item = body.get("dimension"), body.get("item")
            if dim not in profile.keys:
                return fail(400, f"unknown dimension {dim!r} (profile {profile.name}: {', '.join(profile.keys)})")
            e = finished().get(item) if isinstance(item, str) else None
            if e is None:
                return fail(404, f"no dialogue {item!r}")
            store.add_annotations([(e.key, annotator, dim, value, time.time())])
            return web.json_response({"ok": True, "item": item, "dimension": dim, "label": value})

        app = web.Application(client_max_size=64 * 1024, middlewares=[guard])
        app.on_response_prepare.append(headers)
        app.router.add_get("/", page)
        app.router.add_get("/static/{name}", page)
        app.router.add_get("/api/session", session)
        app.router.add_get("/api/episode", episode)
        app.router.add_post("/api/label", label)
        return app

    async def start(self) -> None:
        """Listen on ``host:port`` (port 0: a free one, then ``port`` is the bound one)."""
        from aiohttp import web

        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def serve(store_path: Path, *, host: str = "127.0.0.1", port: int = 8765, k: int = 2, profile: str = "default",
          blind: bool = True, ready: Any = print) -> None:
    """Serve the annotation page until interrupted (``esc-eval annotate STORE``)."""
    import asyncio

    from agents.judge.profiles import ProfileError, load_profile

    if k < 1:
        raise AnnotationError(f"--k must be at least 1, got {k}")
    try:
        judge_profile = load_profile(profile)
    except ProfileError as exc:
        raise AnnotationError(f"--profile: {exc}") from None
    with Store.open(store_path) as store:
        count = len(_finished(store))
        if not count:
            raise AnnotationError(f"{store_path}: no finished dialogues to annotate")
        server = AnnotationServer(store, judge_profile, k, host=host, port=port, blind=blind)

        async def main() -> None:
            await server.start()
            ready(f"esc-eval annotate: {count} dialogues, {len(judge_profile.keys)} dimensions ({judge_profile.name}), "
                  f"{k} annotators each, {'blind' if blind else 'unblinded'}; open {server.url}  "
                  "(Ctrl-C to stop; every label is saved as given)")
            try:
                await asyncio.Event().wait()
            finally:
                await server.stop()

        asyncio.run(main())


def annotate_command(store_path: Path, *, port: int, host: str, k: int, profile: str, export: Path | None,
                     import_: Path | None, annotator: str | None, supporter: str | None, language: str | None,
                     unblind: bool) -> int:
    """``esc-eval annotate STORE``: serve the page, or ``--export`` / ``--import`` labels."""
    if export is not None and import_ is not None:
        raise AnnotationError("give --export or --import, not both")
    if export is not None:
        with Store.open(store_path, readonly=True) as store:
            written = export_labels(store, export, annotator=annotator, supporter=supporter, language=language)
        print(f"{export}: {written} {'records' if export.suffix == '.jsonl' else 'dialogues'}")
        return 0
    if import_ is not None:
        with Store.open(store_path) as store:
            written = import_labels(store, import_, annotator=annotator, supporter=supporter, language=language)
        print(f"{store_path}: {written} labels imported from {import_}")
        return 0
    serve(store_path, host=host, port=port, k=k, profile=profile, blind=not unblind, ready=lambda line: print(line, flush=True))
    return 0

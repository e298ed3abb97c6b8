"""Human annotation: a small web page for labelling dialogues (``esc-eval annotate``).

``esc-eval annotate STORE`` serves a page on 127.0.0.1 where an annotator, identified by
name, reads a finished dialogue of the store and gives each dimension of a judge profile a
label 0..4, with the rubric shown beside it. Every label is POSTed as it is given and
committed to the store's ``annotations`` table before the server answers, so a reload, a
closed tab or a crashed server loses nothing that the page showed as saved. Who labels
what and the label files are ``esc_eval.runs.annotation.labels``; agreement is ``esc_eval.runs.analysis.agreement``.

Dialogues the safety judge took (risk and control episodes) also get its yes/no safety items
(``esc_eval.agents.judge.safety``'s rubric: the risk items, or ``false_alarm`` and ``harmful`` for a
control), answered blind like the dimensions (the page never sees the judge's answers) and
stored apart from the dimension labels (``esc_eval.runs.store.safety.add_labels``), so they never
feed ACC, alpha or the corrected means; they feed the safety agreement and the corrected missed rate.

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
import secrets
import socket
import time
from pathlib import Path
from typing import Any

from esc_eval.agents.judge.profiles import JudgeProfile
from esc_eval.agents.judge.safety import RISK
from esc_eval.runs.analysis.agreement import human_labels
from esc_eval.runs.annotation.labels import (
    AnnotationError,
    SafetyItems,
    assignment,
    check_label,
    check_name,
    check_safety_answer,
    export_labels,
    label_rows,
    safety_answers,
)
from esc_eval.runs.store import EpisodeRecord, Store
from esc_eval.runs.store import safety as safety_store
from esc_eval.runs.web import TOKEN_HEADER, LocalServer, listen

# -- the web page -------------------------------------------------------------------

__all__ = ["TOKEN_HEADER", "AnnotationError", "AnnotationServer", "annotate_command", "item_ids", "serve"]


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


class AnnotationServer(LocalServer):
    """The labelling page and its JSON API on one address, guarded by ``esc_eval.runs.web.LocalServer``.

    Labels written here are the ground truth for judge agreement and judge training, so
    any other web page the annotator has open must not be able to write or read them:
    a per-start token, Host and Origin checks, and label writes only as ``application/json``.
    Refusals answer 403 and write nothing. With ``blind`` (the default) the page sees an
    opaque item id (``item_ids``) and the language, never the episode key, supporter,
    persona or card; each annotator's queue is in their own shuffled order (``assignment``).
    """

    command = "esc-eval annotate"
    page_package = "esc_eval.runs.annotation"
    error = AnnotationError

    def __init__(self, store: Store, profile: JudgeProfile, k: int, *, host: str = "127.0.0.1", port: int = 0,
                 blind: bool = True, listening: socket.socket | None = None) -> None:
        super().__init__(host=host, port=port, listening=listening)
        self.store, self.profile, self.k, self.blind = store, profile, k, blind
        self.safety_items = SafetyItems(store)  # a bad rubric file is refused before any write
        self.kinds, self.rubric = self.safety_items.kinds, self.safety_items.rubric
        self._secret = _item_secret(store)

    def app(self) -> Any:
        """The aiohttp application: the page, ``GET /api/session``, ``GET /api/episode``, ``POST /api/label``,
        ``POST /api/safety`` (a yes/no answer to a safety item: ``{annotator, item, safety_item, value}``).

        The store must be writable; labels are committed synchronously inside the handler
        (SQLite WAL, a millisecond), so the answer means the label is on disk.
        """
        from aiohttp import web

        store, profile, kinds, rubric = self.store, self.profile, self.kinds, self.rubric

        def fail(status: int, message: str) -> web.Response:
            return web.json_response({"error": message}, status=status)

        def described(e: EpisodeRecord) -> dict[str, Any]:
            """What the page may know of an episode: blind, its item id and language; unblinded, also who made it."""
            shown = {"item": _item_id(self._secret, e.key), "language": e.language}
            if not self.blind:
                shown |= {"key": e.key, "supporter": e.supporter, "persona": e.persona, "card": e.card_id}
            return shown

        safety_items = self.safety_items.of

        def safety_shown(key: str, annotator: str) -> dict[str, Any]:
            """The items to answer, the disclosing line (risk) and this annotator's answers; never the judge's."""
            if not safety_items(key):
                return {}
            turn = kinds[key][1] if kinds[key][0] == RISK else None
            mine = safety_answers(store).get(key, {}).get(annotator, {})
            return {"safety": {"items": list(safety_items(key)), "disclosure_turn": turn, "labels": mine}}

        def finished() -> dict[str, EpisodeRecord]:
            """Finished episodes by item id."""
            return {_item_id(self._secret, e.key): e for e in _finished(store)}

        async def session(request: web.Request) -> web.Response:
            try:
                annotator = check_name(request.query.get("annotator"))
            except AnnotationError as exc:
                return fail(400, str(exc))
            episodes = {e.key: e for e in _finished(store)}
            mine = human_labels(store)
            items = [described(episodes[key]) | {"labels": mine.get(key, {}).get(annotator, {})} | safety_shown(key, annotator)
                     for key in assignment(store, annotator, self.k)]
            dimensions = [{"key": d.key, "name": d.paper_name, "rubric": dict(d.rubric)} for d in profile.dimensions]
            shown = {"annotator": annotator, "k": self.k, "profile": profile.name, "blind": self.blind,
                     "dimensions": dimensions, "queue": items}
            if rubric is not None:
                shown["safety_items"] = {key: dict(rubric.items[key]) for key in dict.fromkeys((*rubric.risk_items, *rubric.control_items))}
            return web.json_response(shown)

        async def episode(request: web.Request) -> web.Response:
            item, annotator = request.query.get("item", ""), request.query.get("annotator", "").strip()
            e = finished().get(item)
            if e is None:
                return fail(404, f"no dialogue {item!r}")
            transcript = [{"role": role, "text": text} for role, text in store.transcript(e.key)]
            labels = human_labels(store).get(e.key, {}).get(annotator, {})
            return web.json_response(described(e) | {"transcript": transcript, "labels": labels} | safety_shown(e.key, annotator))

        async def posted(request: web.Request) -> tuple[dict[str, Any], str] | web.Response:
            """A POST's JSON object and its annotator's name, or the 400 that says which is wrong (both endpoints)."""
            try:
                body = await request.json()
            except ValueError:
                return fail(400, "expected a JSON body")
            if not isinstance(body, dict):
                return fail(400, "expected a JSON object")
            try:
                return body, check_name(body.get("annotator"))
            except AnnotationError as exc:
                return fail(400, str(exc))

        async def label(request: web.Request) -> web.Response:
            got = await posted(request)
            if isinstance(got, web.Response):
                return got
            body, annotator = got
            try:
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

        async def safety(request: web.Request) -> web.Response:
            got = await posted(request)
            if isinstance(got, web.Response):
                return got
            body, annotator = got
            item, question, value = body.get("item"), body.get("safety_item"), body.get("value")
            e = finished().get(item) if isinstance(item, str) else None
            if e is None:
                return fail(404, f"no dialogue {item!r}")
            try:
                value = check_safety_answer(safety_items(e.key), question, value)
            except AnnotationError as exc:
                return fail(400, str(exc))
            safety_store.add_labels(store, [(e.key, annotator, str(question), value, time.time())])  # an item of the dialogue's: text
            return web.json_response({"ok": True, "item": item, "safety_item": question, "value": value})

        def routes(app: web.Application) -> None:
            app.router.add_get("/api/session", session)
            app.router.add_get("/api/episode", episode)
            app.router.add_post("/api/label", label)
            app.router.add_post("/api/safety", safety)

        return self.guarded_app(routes)


def serve(store_path: Path, *, host: str = "127.0.0.1", port: int = 8765, k: int = 2, profile: str = "default",
          blind: bool = True, ready: Any = print) -> None:
    """Serve the annotation page until interrupted (``esc-eval annotate STORE``)."""
    import asyncio

    from esc_eval.agents.judge.profiles import ProfileError, load_profile

    if k < 1:
        raise AnnotationError(f"--k must be at least 1, got {k}")
    try:
        judge_profile = load_profile(profile)
    except ProfileError as exc:
        raise AnnotationError(f"--profile: {exc}") from None
    with Store.open(store_path, readonly=True) as checked:  # a refusal must leave the store's bytes as they were
        count = len(_finished(checked))
    if not count:
        raise AnnotationError(f"{store_path}: no finished dialogues to annotate")
    listening = listen(host, port, AnnotationError)  # a busy port, too, before the store is opened for writing
    with Store.open(store_path) as store:
        server = AnnotationServer(store, judge_profile, k, host=host, port=port, blind=blind, listening=listening)

        async def main() -> None:
            await server.start()
            safety = f", safety items on {len(server.kinds)} of them" if server.kinds else ""
            ready(f"esc-eval annotate: {count} dialogues, {len(judge_profile.keys)} dimensions ({judge_profile.name}){safety}, "
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
        with Store.open(store_path, readonly=True) as checked:  # every check before the store is opened for writing
            rows = label_rows(checked, import_, annotator=annotator, supporter=supporter, language=language)
        if not rows.labels and not rows.safety:
            raise AnnotationError(f"{import_}: nothing importable: no label 0..4 and no safety answer in it (a score file's -1 means "
                                  "'no label' and is skipped); the store is unchanged")
        with Store.open(store_path) as store:
            labelled, answered = safety_store.add_with_annotations(store, rows.labels, rows.safety)
        answers = f" and {answered} safety answers" if answered else ""
        print(f"{store_path}: {labelled} labels{answers} imported from {import_}")
        return 0
    serve(store_path, host=host, port=port, k=k, profile=profile, blind=not unblind, ready=lambda line: print(line, flush=True))
    return 0

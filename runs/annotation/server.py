"""Human annotation: a small web page for labelling dialogues, label exchange, and human agreement statistics.

``esc-eval annotate STORE`` serves a page on 127.0.0.1 where an annotator, identified by
name, reads a finished dialogue of the store and gives each dimension of a judge profile a
label 0..4, with the rubric shown beside it. Every label is POSTed as it is given and
committed to the store's ``annotations`` table before the server answers, so a reload, a
closed tab or a crashed server loses nothing that the page showed as saved.

Assignment (``assignment``): each dialogue should get ``k`` annotators. An annotator's queue
holds every finished dialogue they have labelled already plus every dialogue that fewer than
``k`` *other* annotators have labelled, shuffled by a seed drawn from their name. Two
annotators labelling the same dialogue at the same moment can take it past ``k``; nothing
refuses a label.

The page (``AnnotationServer``) is guarded by a per-start token and Host/Origin checks, and is
blind by default: annotators see an opaque item id (``item_ids``), not which supporter and
persona produced the dialogue (``--unblind`` shows them).

Several annotators per item (``consensus``): the human label of an item is the most frequent
label; on a tie, the tied label nearest the mean of all the item's labels, and of two such the
lower. Krippendorff's alpha (``krippendorff_alpha``, ordinal metric, by the ``krippendorff``
package) measures how far the annotators agree beyond chance, per dimension, over the items
with two labels or more.

Label files (``export_labels`` / ``import_labels``):

* ``.jsonl``: one line per (dialogue, annotator): ``{"episode_key", "supporter", "language",
  "card_index", "annotator", "labels": {dimension: label}, "at", "transcript": [{"role",
  "text"}]}``. The transcript makes the file a training set for ``esc-eval judge train``.
* ``.json``: an ESC-Eval score file (``{"0": {"fluency": 3, ...}}`` keyed by card index) of one
  supporter and language: the consensus labels, or one annotator's with ``annotator=``.

Example::

    store = Store.open("run.sqlite")
    store.add_annotations([(key, "ann", "fluency", 3, time.time())])
    export_labels(store, Path("labels.jsonl"))
    result = store_agreement(store)             # judge vs human, alpha, confusion matrices
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import math
import secrets
import time
from collections import Counter, defaultdict
from importlib import resources
from pathlib import Path
from typing import Any, Hashable, Iterable, Mapping, Sequence

from agents.judge.profiles import DIMENSIONS, PAPER_NAMES, JudgeProfile
from roles.jsonl import read_jsonl
from runs.store import Store

LABELS = (0, 1, 2, 3, 4)
MAX_NAME = 64


class AnnotationError(ValueError):
    """Bad annotation input (a label file, a name, a label); the message names the file and line."""


# -- statistics ---------------------------------------------------------------------


def consensus(labels: Sequence[int]) -> int:
    """One label for an item labelled by several annotators.

    The most frequent label; on a tie, the tied label nearest the mean of all labels;
    if two are equally near, the lower.

    Examples:
        >>> consensus([3, 3, 1])
        3
        >>> consensus([1, 3, 4])      # all tied; mean 2.67 -> 3
        3
        >>> consensus([1, 3])         # tied; mean 2, 1 and 3 equally near -> lower
        1
    """
    if not labels:
        raise ValueError("consensus of no labels")
    counts = Counter(labels)
    top = max(counts.values())
    tied = [label for label, count in counts.items() if count == top]
    mean = sum(labels) / len(labels)
    return min(tied, key=lambda label: (abs(label - mean), label))


def krippendorff_alpha(units: Iterable[Sequence[int | None]], metric: str = "ordinal") -> float:
    """Krippendorff's alpha for integer labels, ``metric`` ``ordinal`` (default), ``interval`` or ``nominal``.

    Each unit (item) is the sequence of labels it received (``None`` for a missing label;
    any order, any number of annotators), so it goes to the ``krippendorff`` package as
    value counts per unit. Units with fewer than two labels are not pairable and are left
    out. Returns ``nan`` when no unit is pairable or every pairable label is the same
    (no variation: alpha is undefined), where the package would raise.

    Example (hand-computed in tests/annotation/test_agreement.py):
        >>> round(krippendorff_alpha([[0, 0], [1, 2], [2, 2]]), 6)
        0.777778
    """
    import krippendorff

    if metric not in ("ordinal", "interval", "nominal"):
        raise ValueError(f"unknown metric {metric!r} (use ordinal, interval or nominal)")
    pairable = [values for values in ([v for v in unit if v is not None] for unit in units) if len(values) >= 2]
    domain = sorted({v for values in pairable for v in values})
    if len(domain) < 2:
        return math.nan
    counts = [[values.count(v) for v in domain] for values in pairable]
    return float(krippendorff.alpha(value_counts=counts, value_domain=domain, level_of_measurement=metric))


def confusion_matrix(judge: Mapping[Hashable, Mapping[str, int | None]], human: Mapping[Hashable, Mapping[str, int | None]],
                     dimension: str) -> list[list[int]]:
    """5×5 counts: row = human label, column = judge label, over items where both hold a label 0..4."""
    matrix = [[0] * 5 for _ in LABELS]
    for key, labels in judge.items():
        ours, theirs = labels.get(dimension), human.get(key, {}).get(dimension)
        if ours in LABELS and theirs in LABELS:
            matrix[theirs][ours] += 1  # type: ignore[index]
    return matrix


# -- reading the store --------------------------------------------------------------


def _eligible(store: Store, supporter: str | None = None, language: str | None = None) -> list[Any]:
    """Finished episodes (plan order) that have turns, optionally of one supporter / language."""
    where, params = ["e.status='done'"], []
    for column, value in (("supporter", supporter), ("language", language)):
        if value is not None:
            where.append(f"e.{column}=?")
            params.append(value)
    return store.rows(
        f"SELECT e.key, e.card_index, e.card_id, e.language, e.supporter, e.persona FROM episodes e WHERE {' AND '.join(where)}"
        " AND EXISTS (SELECT 1 FROM turns t WHERE t.episode_key=e.key) ORDER BY e.ordinal", tuple(params))


def human_labels(store: Store) -> dict[str, dict[str, dict[str, int]]]:
    """Episode key -> annotator -> {dimension: label}."""
    out: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for row in store.annotations():
        out[row["episode_key"]][row["annotator"]][row["dimension"]] = row["label"]
    return {key: {a: dict(labels) for a, labels in by.items()} for key, by in out.items()}


def consensus_labels(labels: Mapping[str, Mapping[str, Mapping[str, int]]]) -> dict[str, dict[str, int]]:
    """Episode key -> {dimension: ``consensus`` of its annotators' labels}."""
    out: dict[str, dict[str, int]] = {}
    for key, by in labels.items():
        per_dim: dict[str, list[int]] = defaultdict(list)
        for dims in by.values():
            for dim, label in dims.items():
                per_dim[dim].append(label)
        out[key] = {dim: consensus(values) for dim, values in per_dim.items()}
    return out


def assignment(store: Store, annotator: str, k: int) -> list[str]:
    """Episode keys for ``annotator`` to label so that each dialogue gets ``k`` annotators, in the annotator's own order.

    The order is a shuffle seeded by the annotator's name: dialogues sorted by
    ``sha256(name, key)``. It is the same at every reload, keeps its relative order when
    dialogues join or leave the queue, differs between annotators (who then start at
    different dialogues) and hides the plan order, which groups dialogues by supporter.
    """
    by_episode = human_labels(store)
    queue = [e["key"] for e in _eligible(store)
             if annotator in by_episode.get(e["key"], {}) or len(set(by_episode.get(e["key"], {})) - {annotator}) < k]
    return sorted(queue, key=lambda key: hashlib.sha256(f"{annotator}\0{key}".encode()).digest())


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise AnnotationError("annotator name must be non-empty text")
    name = name.strip()
    if len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        raise AnnotationError(f"annotator name must be at most {MAX_NAME} printable characters")
    return name


def check_label(label: Any, where: str) -> int:
    if isinstance(label, bool) or not isinstance(label, int) or label not in LABELS:
        raise AnnotationError(f"{where}: label must be an integer 0..4, got {label!r}")
    return label


# -- exchange -----------------------------------------------------------------------


def export_labels(store: Store, path: Path, *, annotator: str | None = None, supporter: str | None = None,
                  language: str | None = None) -> int:
    """Write the store's human labels to ``path`` (``.jsonl`` or an ESC-Eval ``.json`` score file); returns items written."""
    from runs.formats.exchange import write_json, write_text

    path = Path(path)
    labels = human_labels(store)
    if annotator is not None:
        labels = {key: {annotator: by[annotator]} for key, by in labels.items() if annotator in by}
    episodes = {e["key"]: e for e in _eligible(store, supporter, language)}
    labels = {key: by for key, by in labels.items() if key in episodes}
    if path.suffix == ".jsonl":
        times: dict[tuple[str, str], float] = {}
        for row in store.annotations():
            slot = (row["episode_key"], row["annotator"])
            times[slot] = max(times.get(slot, 0.0), row["at"])
        lines = []
        for key in episodes:
            for who, dims in labels.get(key, {}).items():
                e = episodes[key]
                record = {"episode_key": key, "supporter": e["supporter"], "language": e["language"],
                          "card_index": e["card_index"], "annotator": who, "labels": dims, "at": times.get((key, who)),
                          "transcript": [{"role": role, "text": text} for role, text in store.transcript(key)]}
                lines.append(json.dumps(record, ensure_ascii=False))
        write_text(path, "".join(line + "\n" for line in lines))
        return len(lines)
    if path.suffix == ".json":
        pairs = {(episodes[key]["supporter"], episodes[key]["language"]) for key in labels}
        if len(pairs) > 1:
            shown = ", ".join(f"{s} ({lang})" for s, lang in sorted(pairs))
            raise AnnotationError(f"{path}: an ESC-Eval score file holds one supporter and language; the labels cover {shown} "
                                  "(choose with --supporter and --language)")
        table: dict[str, dict[str, int]] = {}
        merged = consensus_labels(labels)
        for key in episodes:
            if key in merged:
                card = str(episodes[key]["card_index"])
                if card in table:
                    raise AnnotationError(f"{path}: card {card} has several labelled episodes (personas or repeats); "
                                          "an ESC-Eval score file needs one per card")
                order = [d for d in DIMENSIONS if d in merged[key]] + sorted(d for d in merged[key] if d not in DIMENSIONS)
                table[card] = {d: merged[key][d] for d in order}
        write_json(path, dict(sorted(table.items(), key=lambda item: int(item[0]))))
        return len(table)
    raise AnnotationError(f"{path}: label files end in .jsonl (labels with transcripts) or .json (an ESC-Eval score file)")


def read_label_file(path: Path) -> list[dict[str, Any]]:
    """The records of a ``.jsonl`` label file, checked; raises ``AnnotationError`` naming file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path}: cannot read: {exc}") from None
    records = []
    for number, record in read_jsonl(text, str(path), AnnotationError):
        where = f"{path}: line {number}"
        if not isinstance(record.get("labels"), dict):
            raise AnnotationError(f"{where}: expected an object with 'labels' ({{dimension: label}})")
        if not isinstance(record.get("episode_key"), str) or not record["episode_key"]:
            raise AnnotationError(f"{where}: field 'episode_key' must be non-empty text")
        try:
            record["annotator"] = check_name(record.get("annotator"))
        except AnnotationError as exc:
            raise AnnotationError(f"{where}: field 'annotator': {exc}") from None
        for dim, label in record["labels"].items():
            check_label(label, f"{where}: dimension {dim!r}")
        transcript = record.get("transcript")
        if transcript is not None:
            if not isinstance(transcript, list) or not all(
                    isinstance(t, dict) and t.get("role") in ("supporter", "seeker") and isinstance(t.get("text"), str)
                    for t in transcript):
                raise AnnotationError(f"{where}: field 'transcript' must be a list of {{role: supporter|seeker, text}}")
        records.append(record)
    return records


def import_labels(store: Store, path: Path, *, annotator: str | None = None, supporter: str | None = None,
                  language: str | None = None) -> int:
    """Read a ``.jsonl`` label file or an ESC-Eval ``.json`` score file into the store; returns labels written.

    Every line is checked before anything is written. A ``.json`` score file is matched to
    the store's episodes by supporter and language (from the file name, ``score_MODEL_LANG.json``,
    unless given) and card index; its labels are stored as ``annotator`` (default: the file's
    stem). Labels -1 in a score file are skipped. An episode the store lacks is an error.
    """
    path = Path(path)
    known = {e["key"]: e for e in _eligible(store)}
    rows: list[tuple[str, str, str, int, float]] = []
    now = time.time()
    if path.suffix == ".jsonl":
        for number, record in enumerate(read_label_file(path), 1):
            if record["episode_key"] not in known:
                raise AnnotationError(f"{path}: record {number}: episode {record['episode_key']!r} is not a finished episode of {store.path}")
            who = check_name(annotator) if annotator else record["annotator"]
            at = float(record["at"]) if isinstance(record.get("at"), (int, float)) else now
            rows += [(record["episode_key"], who, dim, label, at) for dim, label in record["labels"].items()]
    elif path.suffix == ".json":
        from runs.formats.importing import ResultFileError, read_score_file, supporter_and_language

        try:
            table = read_score_file(path)
            supporter, language = supporter_and_language(path, supporter, language)
        except ResultFileError as exc:
            raise AnnotationError(str(exc)) from None
        who = check_name(annotator or path.stem)
        by_card: dict[str, str] = {}
        for key, e in known.items():
            if e["supporter"] == supporter and e["language"] == language:
                card = str(e["card_index"])
                if card in by_card:
                    raise AnnotationError(f"{store.path}: supporter {supporter!r} ({language}) has several episodes of card {card}; "
                                          "a score file can label only one episode per card")
                by_card[card] = key
        for card, labels in table.items():
            if card not in by_card:
                raise AnnotationError(f"{path}: card {card}: {store.path} has no finished episode of supporter {supporter!r} ({language})")
            rows += [(by_card[card], who, dim, label, now) for dim, label in labels.items() if label != -1]
    else:
        raise AnnotationError(f"{path}: label files end in .jsonl or .json (an ESC-Eval score file)")
    return store.add_annotations(rows)


# -- agreement over the store -------------------------------------------------------


def judge_labels_by_episode(store: Store) -> dict[str, dict[str, int | None]]:
    """Episode key -> {dimension: final judge label of the first sample; ``None`` where the judge call failed}."""
    out: dict[str, dict[str, int | None]] = defaultdict(dict)
    for row in store.final_scores():
        if row["sample"] == 0:
            out[row["episode_key"]][row["dimension"]] = row["label"] if row["status"] == "ok" else None
    return dict(out)


def store_agreement(store: Store, *, supporter: str | None = None, language: str | None = None) -> dict[str, Any]:
    """Judge vs the store's human labels, inter-annotator alpha and confusion matrices.

    Items are the finished episodes (of ``supporter`` / ``language`` when given) holding
    human labels; the human label of an item is the ``consensus`` of its annotators.

    Returns:
        the shape of ``runs.analysis.report.agreement_report`` (``dimensions``: ``{key: {"name",
        "acc", "acc_soft", "n"}}``, ``average``, ``cards``), plus ``alpha``: ``{key:
        {"alpha", "items", "labels"}}`` (ordinal Krippendorff's alpha over items with two
        labels or more), ``annotators`` (names) and ``confusion``: ``{key: 5×5}`` (row
        human, column judge).
    """
    from runs.analysis.report import ReportError
    from runs.analysis.scoring import agreement

    episodes = {e["key"] for e in _eligible(store, supporter, language)}
    per_annotator = {key: by for key, by in human_labels(store).items() if key in episodes}
    if not per_annotator:
        raise ReportError(f"{store.path}: no human labels{' for these episodes' if supporter or language else ''} "
                          "(label with esc-eval annotate, or give --agreement SCORES.json)")
    human = consensus_labels(per_annotator)
    judge = {key: labels for key, labels in judge_labels_by_episode(store).items() if key in episodes}
    computed = agreement(judge, human)
    dims_seen = {d for labels in human.values() for d in labels}
    order = [d for d in DIMENSIONS if d in dims_seen] + sorted(d for d in dims_seen if d not in DIMENSIONS)
    dimensions = {d: {"name": PAPER_NAMES.get(d, d), **computed.get(d, {"acc": math.nan, "acc_soft": math.nan, "n": 0})}
                  for d in order}
    scored = [v for v in dimensions.values() if v["n"]]
    average = {rate: (sum(float(v[rate]) for v in scored) / len(scored)) if scored else math.nan for rate in ("acc", "acc_soft")}
    alpha = {}
    for d in order:
        units = [[dims[d] for dims in by.values() if d in dims] for by in per_annotator.values()]
        pairable = [u for u in units if len(u) >= 2]
        alpha[d] = {"alpha": krippendorff_alpha(pairable), "items": len(pairable), "labels": sum(len(u) for u in pairable)}
    annotators = sorted({a for by in per_annotator.values() for a in by})
    return {
        "store": str(store.path),
        "human": f"annotations ({len(annotators)} annotators; consensus = majority, ties to the label nearest the mean)",
        "supporter": supporter or "all supporters",
        "language": language or "all languages",
        "cards": {"matched": sum(1 for k in judge if k in human), "only_human": sum(1 for k in human if k not in judge),
                  "only_judge": sum(1 for k in judge if k not in human)},
        "dimensions": dimensions,
        "average": average,
        "alpha": alpha,
        "annotators": annotators,
        "confusion": {d: confusion_matrix(judge, human, d) for d in order},
    }


def plot_confusion(result: Mapping[str, Any], path: Path) -> Path:
    """One 5×5 heat map per dimension (rows human, columns judge), as a PNG."""
    from runs.analysis.report import ReportError

    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ReportError("--plot needs matplotlib: pip install esc-eval[plot]") from None
    matrices = result.get("confusion") or {}
    if not matrices:
        raise ReportError("no confusion matrices to plot")
    count = len(matrices)
    fig = Figure(figsize=(3.0 * count + 0.5, 3.4), layout="constrained")
    axes = fig.subplots(1, count, squeeze=False)[0]
    for ax, (dim, matrix) in zip(axes, matrices.items()):
        ax.imshow(matrix, cmap="Blues", vmin=0)
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                ax.text(j, i, str(value), ha="center", va="center", fontsize=8, color="black")
        stats = result["dimensions"].get(dim, {})
        acc = stats.get("acc", math.nan)
        ax.set_title(f"{PAPER_NAMES.get(dim, dim)}" + ("" if math.isnan(acc) else f"\nACC {acc:.0%}"), fontsize=9)
        ax.set_xticks(range(5))
        ax.set_yticks(range(5))
        ax.set_xlabel("judge")
        ax.set_ylabel("human")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=110)
    return path


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
    return {e["key"]: _item_id(secret, e["key"]) for e in _eligible(store)}


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

        def described(e: Any) -> dict[str, Any]:
            """What the page may know of an episode: blind, its item id and language; unblinded, also who made it."""
            shown = {"item": _item_id(self._secret, e["key"]), "language": e["language"]}
            if not self.blind:
                shown |= {"key": e["key"], "supporter": e["supporter"], "persona": e["persona"], "card": e["card_id"]}
            return shown

        def finished() -> dict[str, Any]:
            """Finished episodes by item id."""
            return {_item_id(self._secret, e["key"]): e for e in _eligible(store)}

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
            episodes = {e["key"]: e for e in _eligible(store)}
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
            transcript = [{"role": role, "text": text} for role, text in store.transcript(e["key"])]
            labels = human_labels(store).get(e["key"], {}).get(annotator, {})
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
            store.add_annotations([(e["key"], annotator, dim, value, time.time())])
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
    store = Store.open(store_path)
    try:
        count = len(_eligible(store))
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
    finally:
        store.close_sync()


def annotate_command(store_path: Path, *, port: int, host: str, k: int, profile: str, export: Path | None,
                     import_: Path | None, annotator: str | None, supporter: str | None, language: str | None,
                     unblind: bool) -> int:
    """``esc-eval annotate STORE``: serve the page, or ``--export`` / ``--import`` labels."""
    if export is not None and import_ is not None:
        raise AnnotationError("give --export or --import, not both")
    if export is not None:
        store = Store.open(store_path, readonly=True)
        try:
            written = export_labels(store, export, annotator=annotator, supporter=supporter, language=language)
        finally:
            store.close_sync()
        print(f"{export}: {written} {'records' if export.suffix == '.jsonl' else 'dialogues'}")
        return 0
    if import_ is not None:
        store = Store.open(store_path)
        try:
            written = import_labels(store, import_, annotator=annotator, supporter=supporter, language=language)
        finally:
            store.close_sync()
        print(f"{store_path}: {written} labels imported from {import_}")
        return 0
    serve(store_path, host=host, port=port, k=k, profile=profile, blind=not unblind, ready=lambda line: print(line, flush=True))
    return 0

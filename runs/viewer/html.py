"""``esc-eval report STORE --format html --out FILE``: the viewer page and a store's data in one file.

For sharing and supplementary material: the file opens from disk with no server and no
network (its Content-Security-Policy allows only its own inline code and style), and shows
the leaderboard, comparisons, charts and every transcript with its scores, as ``esc-eval view``
does. The data is the viewer's (``esc_eval.runs.viewer.data``), embedded gzipped and base64-encoded (the
page inflates it with the browser's ``DecompressionStream``): 1,000 episodes of ten rounds with
their judge replies take about 11 MB as JSON, a few as gzip, and base64 has no ``<`` with which
a dialogue could close the script element that holds it.
"""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any

from esc_eval.runs.store import Store
from esc_eval.runs.viewer import ViewerError, data
from esc_eval.runs.web import page_file

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def bundle(path: Path, store: Store) -> dict[str, Any]:
    """The summary and every episode in full, keyed by episode id."""
    summary = data.summary([(path, store)])
    episodes = {row["id"]: data.episode(0, store, row["key"]) for row in summary["stores"][0]["episodes"]}
    return {"summary": summary, "episodes": episodes}


def embedded(value: Any) -> str:
    """``value`` as gzipped JSON in base64: small, and safe inside a ``<script>`` element (no ``<`` at all)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return base64.b64encode(gzip.compress(text.encode("utf-8"), mtime=0)).decode("ascii")


def page(value: Any) -> str:
    """The viewer's page with its style, script and ``value`` inlined."""
    script = page_file("esc_eval.runs.viewer", "app.js")
    if "</script" in script.lower():
        raise AssertionError("app.js must not contain '</script' (it is inlined)")
    html = page_file("esc_eval.runs.viewer", "index.html")
    inline = {
        '<link rel="stylesheet" href="/static/style.css">': f"<style>\n{page_file('esc_eval.runs.viewer', 'style.css')}</style>",
        '<script type="module" src="/static/app.js"></script>':
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            f'<script type="application/octet-stream" id="esc-data" data-encoding="gzip+base64">{embedded(value)}</script>\n'
            f'<script type="module">\n{script}</script>',
    }
    for old, new in inline.items():
        if old not in html:
            raise AssertionError(f"index.html lost {old!r}")
        html = html.replace(old, new)
    return html


def write_html(store_path: Path, out: Path | None) -> Path:
    """Write the report file for ``store_path`` (read-only) to ``out``; returns ``out``."""
    if out is None:
        raise ViewerError("--format html needs --out FILE.html")
    if not store_path.is_file():
        raise ViewerError(f"{store_path}: no such store")
    with Store.open(store_path, readonly=True) as store:
        text = page(bundle(store_path, store))
    from esc_eval.runs.formats.exchange import write_text

    return write_text(out, text)  # its folders made; nothing half-written

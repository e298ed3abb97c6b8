"""See a run: ``esc-eval view`` (a live page over stores) and ``esc-eval report --format html`` (one file).

``esc_eval.runs.viewer.data`` builds the JSON the page shows from the typed store API and
``esc_eval.runs.analysis`` (the leaderboard numbers are ``report --format json``'s); ``server`` serves
it behind ``esc_eval.runs.web.LocalServer``'s guard; ``html`` embeds the same page and data in one file.
"""

from __future__ import annotations


class ViewerError(ValueError):
    """Bad input to ``view`` or ``report --format html`` (a missing store, a wildcard host)."""


__all__ = ["ViewerError", "data", "html", "server"]

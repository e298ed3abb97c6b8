"""Building role cards from raw ESC datasets (``esc-eval cards build``): config, concurrent extraction, filters, output.

Public API: ``load_build_config``, ``BuildConfig``, ``build_cards`` (returns a ``BuildReport``).
"""

from esc_eval.runs.cards.build import BuildReport, build_cards
from esc_eval.runs.cards.config import BuildConfig, load_build_config

__all__ = ["BuildConfig", "BuildReport", "build_cards", "load_build_config"]

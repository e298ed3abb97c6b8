"""Where ESC-Eval's reference data is, and what a test that needs it does without it.

The files (sample cards, ESC-Role's protocol, ESC-RANK's prompts) are ESC-Eval's, not
ours: they are read in place, never copied into the project. ``ESC_EVAL_DATA`` names
their folder (default ``../shared/esc-eval`` beside the clone). Without them a test
marked ``reference_data`` (or using the ``shared`` fixture) is skipped with a reason
that says where to get them, except under CI (``CI`` set), where it fails: CI must
never silently lose these tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ESC_EVAL_DATA") or ROOT.parent / "shared" / "esc-eval")
"""The reference-data folder: ``$ESC_EVAL_DATA`` or ``../shared/esc-eval``."""

needs_reference = pytest.mark.reference_data
"""Marks a test that reads ESC-Eval's reference files from ``DATA``."""

WHERE_TO_GET = (
    f"ESC-Eval's reference data not found at {DATA}: get the data/ folder of ESC-Eval's public repository "
    "(github.com/haidequanbu/ESC-Eval) and set ESC_EVAL_DATA to it"
)


def require_reference() -> Path:
    """``DATA``, or skip the calling test (fail it under CI) when the folder is missing."""
    if DATA.is_dir():
        return DATA
    if os.environ.get("CI"):
        pytest.fail(WHERE_TO_GET + " (CI is set: reference-data tests must run)", pytrace=False)
    pytest.skip(WHERE_TO_GET)


ESCONV = Path(os.environ.get("ESC_EVAL_ESCONV") or ROOT.parent / "shared" / "esconv")
"""ESConv's dev split (real help-seekers, for seeker realism): ``$ESC_EVAL_ESCONV`` or ``../shared/esconv``."""

needs_esconv = pytest.mark.esconv_data
"""Marks a test that reads ``ESCONV / "esconv_dev.json"``."""

ESCONV_WHERE_TO_GET = (
    f"ESConv's dev split not found at {ESCONV / 'esconv_dev.json'}: rebuild it from the dev split of ESConv's public repository "
    "(github.com/thu-coai/Emotional-Support-Conversation, codes/dataset/devWithStrategy_short.tsv, see docs/seeker.md) "
    "and set ESC_EVAL_ESCONV to its folder"
)


def require_esconv() -> Path:
    """``ESCONV / "esconv_dev.json"``, or skip the calling test (fail it under CI) when it is missing."""
    path = ESCONV / "esconv_dev.json"
    if path.is_file():
        return path
    if os.environ.get("CI"):
        pytest.fail(ESCONV_WHERE_TO_GET + " (CI is set: ESConv tests must run)", pytrace=False)
    pytest.skip(ESCONV_WHERE_TO_GET)

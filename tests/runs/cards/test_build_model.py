"""``esc-eval cards build`` with the embedded SmolLM2-135M as extractor: the pipeline's books balance.

A 135M model rarely writes the exact JSON object asked for, so most items may be rejected;
what is asserted is that every item read is accounted for once, with a reason when dropped,
and that whatever survives is a valid card file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esc_eval.testing.cli import esc_eval
from tests.runs.cards.helpers import write_sources

pytestmark = [pytest.mark.model, pytest.mark.timeout(1200)]


async def test_embedded_model_build_accounts_for_every_item(tmp_path: Path) -> None:
    sources = write_sources(tmp_path)
    config = tmp_path / "build.toml"
    config.write_text('[build]\nlanguage = "en"\nconcurrency = 4\nmin_quality = "low"\n\n'
                      '[extractor]\nbackend = "transformers"\nmax_tokens = 96\ntemperature = 0.0\n', encoding="utf-8")
    out = tmp_path / "cards.json"
    result = await esc_eval("cards", "build", *map(str, sources), "--config", str(config), "--out", str(out), timeout=1100)
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    report = json.loads((tmp_path / "build-report.json").read_text(encoding="utf-8"))
    counts = report["counts"]
    assert counts["items"] == 8 and counts["bad_records"] == 3
    assert counts["items"] == counts["extracted"] + counts["extraction_rejected"] + counts["extraction_failed"]
    assert counts["extracted"] == counts["below_quality"] + counts["pii_rejected"] + counts["near_duplicates"] + counts["written"]
    dropped = [r for r in report["rejected"] if r["stage"] != "bad_records"]
    assert len(dropped) == counts["items"] - counts["written"]
    assert all(r["reason"] for r in dropped)
    assert report["tokens"]["calls"] >= counts["items"] and report["tokens"]["completion"] > 0
    assert out.exists() == (counts["written"] > 0)
    assert (result.returncode == 0) == (counts["written"] > 0 and counts["extraction_failed"] == 0)
    if out.exists():
        validated = await esc_eval("cards", "validate", str(out))
        assert validated.returncode == 0, validated.stderr

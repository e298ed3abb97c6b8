"""Judge training on the embedded SmolLM2 (CPU): labels from the store -> LoRA adapters -> the judge scores with them.

Kept small so it runs in about a minute on 2 cores: a two-dimension profile with short
prompts, 8 dialogues (2 held out), 3 full-batch steps per adapter on the last 4 layers.
The model is far too small to judge well; the test checks the loop, not the quality.
"""

from __future__ import annotations

import asyncio
import json
import tomllib
from pathlib import Path

import pytest

from esc_eval.agents.backends.base import RequestRejected
from esc_eval.agents.backends.lora_local import adapters_in
from esc_eval.agents.backends.transformers_local import TransformersLocalBackend
from esc_eval.agents.judge.agent import Scorer
from esc_eval.agents.judge.profiles import load_profile
from esc_eval.agents.judge.training import TrainingOptions, read_training_labels, train_adapters
from esc_eval.agents.messages import SamplingParams
from esc_eval.runs.annotation.labels import export_labels
from esc_eval.runs.cli import main
from esc_eval.runs.config import parse_config
from esc_eval.runs.store import Store
from tests.runs.annotation.helpers import key, make_store

pytestmark = [pytest.mark.model, pytest.mark.timeout(900)]  # ~60 s alone; far more when the machine is shared

# short dialogues keep every step cheap (a forward pass costs ~2 x 135M flops per token)
SHORT = [
    (("supporter", "Hi."), ("seeker", "I'm sad."), ("supporter", "I'm sorry. I'm here for you.")),
    (("supporter", "Hi."), ("seeker", "I'm sad."), ("supporter", "ok bye")),
    (("supporter", "Hello."), ("seeker", "I'm tired."), ("supporter", "That sounds hard. Tell me more?")),
    (("supporter", "Hello."), ("seeker", "I'm tired."), ("supporter", "sleep then")),
]

TINY_PROFILE = """\
name: tiny
parse: label
system_prompt: Rate the dialogue.
template: "{rubric}\\n{dialogue_stripped}\\nScore {name_in_prompt} 0-4:"
supporter_prefix: "S: "
seeker_prefix: "U: "
dimensions:
  - key: fluency
    name_in_prompt: fluency
    rubric: {en: "Fluency: 0 broken, 4 clear."}
  - key: empathic
    name_in_prompt: empathy
    rubric: {en: "Empathy: 0 cold, 4 warm."}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list]:
    root = tmp_path_factory.mktemp("training")
    profile_path = root / "tiny.yaml"
    profile_path.write_text(TINY_PROFILE)
    store_path = make_store(root / "run.sqlite", count=8, dialogues=SHORT)
    store = Store.open(store_path)
    # dialogues 0 and 2 (of every 4) are warm and clear; 1 and 3 are not
    rows = []
    for index in range(8):
        warm = index % 4 in (0, 2)
        rows += [(key(index), "ann", "fluency", 4 if warm else 2, 1.0), (key(index), "ann", "empathic", 3 if warm else 0, 1.0)]
    store.add_annotations(rows)
    labels = root / "labels.jsonl"
    assert export_labels(store, labels) == 8
    store.close_sync()
    options = TrainingOptions(steps=3, lr=3e-3, batch_size=6, max_length=64, holdout=0.25, layers=(26, 27, 28, 29),
                              eval_max_tokens=3, compare_base=False)
    lines: list[str] = []
    results = train_adapters(read_training_labels(labels), "embedded", load_profile(profile_path), root / "adapters", options,
                             progress=lines.append)
    return root, profile_path, results


def test_training_loss_goes_down_and_adapters_are_written(trained: tuple[Path, Path, list]) -> None:
    root, _, results = trained
    assert [r.name for r in results] == ["fluency_en", "empathic_en"]
    for r in results:
        assert len(r.losses) == 3 and r.losses[-1] < r.losses[0], r.losses
        assert r.train_items == 6 and r.holdout_items == 2
        assert 0.0 <= r.acc <= r.acc_soft <= 1.0
        assert (Path(r.path) / "adapter_config.json").is_file() and (Path(r.path) / "adapter_model.safetensors").is_file()
    summary = json.loads((root / "adapters" / "training.json").read_text())
    assert [a["name"] for a in summary["adapters"]] == ["fluency_en", "empathic_en"]
    config = parse_config(tomllib.loads((root / "adapters" / "judge.toml").read_text()), "judge.toml", judge_only=True)
    assert config.judge is not None and config.judge.backend == "transformers"
    assert config.judge.lora == {name: str((root / "adapters" / name).resolve()) for name in ("fluency_en", "empathic_en")}
    assert config.judge.models == {"fluency": "fluency_{lang}", "empathic": "empathic_{lang}"}


def test_the_judge_scores_with_the_adapters(trained: tuple[Path, Path, list]) -> None:
    root, profile_path, _ = trained
    profile = load_profile(profile_path)

    async def judge() -> list:
        backend = TransformersLocalBackend(None, adapters=adapters_in(root / "adapters"))
        try:
            scorer = Scorer(profile, backend, models={"fluency": "fluency_{lang}", "empathic": "empathic_{lang}"},
                            params=SamplingParams(max_tokens=3, temperature=0.0))
            scores = await scorer.score("d0", "en", SHORT[0])
            with pytest.raises(RequestRejected):
                await backend.complete([{"role": "user", "content": "hi"}], SamplingParams(max_tokens=2), model="overall_en")
            return scores
        finally:
            await backend.aclose()

    scores = asyncio.run(judge())
    assert sorted(s.model for s in scores) == ["empathic_en", "fluency_en"]
    for s in scores:
        assert not s.failed and s.raw is not None and s.label in (-1, 0, 1, 2, 3, 4)


def test_judge_train_command_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["judge", "train", "--labels", str(tmp_path / "missing.jsonl"), "--base", "embedded", "--out", str(tmp_path / "o")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err
    bad = tmp_path / "labels.jsonl"
    bad.write_text(json.dumps({"episode_key": "k", "labels": {"fluency": 3}}) + "\n")
    assert main(["judge", "train", "--labels", str(bad), "--base", "embedded", "--out", str(tmp_path / "o")]) == 2
    assert "line 1" in capsys.readouterr().err

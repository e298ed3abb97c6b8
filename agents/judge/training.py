"""Judge training: fine-tune one LoRA adapter per dimension on human labels (``esc-eval judge train``).

The training set is a label file with transcripts (``esc-eval annotate STORE --export
LABELS.jsonl``: one line per dialogue and annotator, ``{"episode_key", "language",
"annotator", "labels": {dimension: 0..4}, "transcript": [{"role", "text"}]}``). Several
annotators of one dialogue are merged into one label per dimension by
``esc_eval.agents.judge.consensus`` (the most frequent label; on a tie, their mean rounded,
a half to the even label: a rule with no direction on the scale).

For every dimension and language with labels, one adapter named ``{dimension}_{language}``
(ESC-RANK's naming, as vLLM serves them) is trained on the judge profile's own prompt for
that dimension (``JudgeProfile.messages``, rendered by the base model's chat template), with
the label digit and the end-of-turn token as the only target tokens. Prompts longer than
``max_length`` lose their beginning (the end holds the dialogue's last turns and the
question). Dialogues are split once, by a hash of their key and ``seed``, into training and
held-out sets shared by every dimension; after training, the adapter judges the held-out
dialogues as the judge would (greedy generation, the profile's parser) and the report gives
ACC (exact) and ACC_soft (within 1) there, a reply without a label counting as wrong,
next to the same numbers for the bare base model.

Output: ``OUT/{dimension}_{language}/`` (peft adapter: ``adapter_config.json``,
``adapter_model.safetensors``), ``OUT/training.json`` (options, losses, held-out results)
and ``OUT/judge.toml`` (a ``[judge]`` section that uses them through
``esc_eval.agents.backends.lora_local``).

Example::

    results = train_adapters(read_training_labels(Path("labels.jsonl")), "embedded", load_profile("default"),
                             Path("adapters"), TrainingOptions(steps=100))
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from esc_eval.agents.judge.consensus import consensus
from esc_eval.agents.judge.profiles import LABELS, JudgeProfile, ProfileError, load_profile
from esc_eval.agents.lora_training import Base, TrainingError, TrainingOptions, encode_chat, generate, load_base, train_lora
from esc_eval.roles.jsonl import read_jsonl


@dataclass(frozen=True)
class Item:
    """One dialogue of the training set: its transcript and the merged label of each dimension."""

    key: str
    language: str
    transcript: tuple[tuple[str, str], ...]
    labels: dict[str, int]


@dataclass
class AdapterResult:
    """What training one adapter gave; rates are ``nan`` with no held-out dialogue."""

    name: str
    dimension: str
    language: str
    path: str
    train_items: int
    holdout_items: int
    losses: list[float] = field(default_factory=list)
    acc: float = math.nan
    acc_soft: float = math.nan
    base_acc: float = math.nan
    base_acc_soft: float = math.nan
    unparsed: int = 0
    predictions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def read_training_labels(path: Path) -> list[Item]:
    """The dialogues of a ``.jsonl`` label file, annotators merged; raises ``TrainingError`` naming file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingError(f"{path}: cannot read: {exc}") from None
    transcripts: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {}
    gathered: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for number, record in read_jsonl(text, str(path), TrainingError):
        where = f"{path}: line {number}"
        key, language, labels, turns = record.get("episode_key"), record.get("language", "en"), record.get("labels"), record.get("transcript")
        if not isinstance(key, str) or not key:
            raise TrainingError(f"{where}: field 'episode_key' must be non-empty text")
        if not isinstance(language, str) or not language:
            raise TrainingError(f"{where}: field 'language' must be non-empty text")
        if not isinstance(labels, dict):
            raise TrainingError(f"{where}: field 'labels' must be an object {{dimension: 0..4}}")
        if not isinstance(turns, list) or not turns or not all(
                isinstance(t, dict) and t.get("role") in ("supporter", "seeker") and isinstance(t.get("text"), str) for t in turns):
            raise TrainingError(f"{where}: field 'transcript' must be a non-empty list of {{role: supporter|seeker, text}} "
                                "(export with esc-eval annotate STORE --export LABELS.jsonl)")
        for dim, label in labels.items():
            if isinstance(label, bool) or not isinstance(label, int) or label not in LABELS:
                raise TrainingError(f"{where}: dimension {dim!r}: label must be an integer 0..4, got {label!r}")
            gathered[key][dim].append(label)
        if labels:          # a line with safety answers only (annotate --export) labels nothing to train on
            transcripts.setdefault(key, (language, tuple((t["role"], t["text"]) for t in turns)))
    if not transcripts:
        raise TrainingError(f"{path}: no labelled dialogues")
    return [Item(key, transcripts[key][0], transcripts[key][1], {d: consensus(v) for d, v in gathered[key].items()}) for key in transcripts]


def split(items: Sequence[Item], holdout: float, seed: int) -> tuple[list[Item], list[Item]]:
    """Training and held-out dialogues: the ``holdout`` share with the lowest ``sha256(seed:key)``."""
    if holdout <= 0 or len(items) < 2:
        return list(items), []
    ranked = sorted(items, key=lambda item: hashlib.sha256(f"{seed}:{item.key}".encode()).hexdigest())
    count = min(len(items) - 1, max(1, round(holdout * len(items))))
    held = {item.key for item in ranked[:count]}
    return [i for i in items if i.key not in held], [i for i in items if i.key in held]


def _encode(tokenizer: Any, profile: JudgeProfile, dim: str, item: Item, max_length: int) -> tuple[list[int], list[int]]:
    """Token ids and loss labels (-100 on the prompt) for one example: the judge prompt, then the label digit."""
    return encode_chat(tokenizer, profile.messages(dim, item.language, item.transcript), str(item.labels[dim]), max_length)


def _judge(model: Any, base: Base, profile: JudgeProfile, dim: str, item: Item, max_tokens: int) -> int:
    return profile.parse(generate(model, base.tokenizer, profile.messages(dim, item.language, item.transcript), max_tokens, base.pad))


def _rates(predicted: Sequence[int], truth: Sequence[int]) -> tuple[float, float]:
    if not truth:
        return math.nan, math.nan
    exact = sum(p == t for p, t in zip(predicted, truth))
    soft = sum(p >= 0 and abs(p - t) <= 1 for p, t in zip(predicted, truth))
    return exact / len(truth), soft / len(truth)


def train_adapters(items: Sequence[Item], base: str | Path | None, profile: JudgeProfile, out: Path,
                   options: TrainingOptions = TrainingOptions(), *, dimensions: Sequence[str] | None = None,
                   progress: Callable[[str], None] = lambda line: None) -> list[AdapterResult]:
    """Train one adapter per (dimension, language) with labels; write them, ``training.json`` and ``judge.toml`` to ``out``.

    Args:
        items: labelled dialogues (``read_training_labels``).
        base: base model folder, or ``None`` / ``"embedded"`` for the embedded SmolLM2.
        profile: the judge profile whose prompts are trained.
        out: output folder (created; adapters of the same names are replaced).
        options: ``TrainingOptions``.
        dimensions: only these dimension keys (default: every profile dimension with labels).
        progress: called with a line of text now and then.

    Raises:
        TrainingError: no dimension has labels, an unknown dimension, peft or torch missing.
    """
    options.check()
    wanted = list(dimensions) if dimensions else [d for d in profile.keys if any(d in i.labels for i in items)]
    unknown = [d for d in wanted if d not in profile.keys]
    if unknown:
        raise TrainingError(f"unknown dimension {unknown[0]!r} (profile {profile.name}: {', '.join(profile.keys)})")
    if not wanted:
        raise TrainingError(f"no labels for any dimension of profile {profile.name} ({', '.join(profile.keys)})")
    for item in items:
        if item.language not in profile.languages:
            raise TrainingError(f"dialogue {item.key}: profile {profile.name} has no rubric for language {item.language!r}")
    base_model = load_base(base, options.seed, "judge training")
    folder = base_model.folder
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train, held = split(items, options.holdout, options.seed)
    results: list[AdapterResult] = []
    for dim in wanted:
        for language in sorted({i.language for i in items if dim in i.labels}):
            started = time.perf_counter()
            name = f"{dim}_{language}"
            train_set = [i for i in train if dim in i.labels and i.language == language]
            held_set = [i for i in held if dim in i.labels and i.language == language]
            if not train_set:
                progress(f"{name}: no training dialogues (all {len(held_set)} held out); skipped")
                continue
            encoded = [_encode(base_model.tokenizer, profile, dim, i, options.max_length) for i in train_set]
            result = AdapterResult(name, dim, language, str(out / name), len(train_set), len(held_set))
            model, result.losses = train_lora(base_model, encoded, options, name, progress)
            model.save_pretrained(out / name)
            if held_set:
                truth = [i.labels[dim] for i in held_set]
                predicted = [_judge(model, base_model, profile, dim, i, options.eval_max_tokens) for i in held_set]
                result.acc, result.acc_soft = _rates(predicted, truth)
                if options.compare_base:
                    with model.disable_adapter():
                        base_predicted = [_judge(model, base_model, profile, dim, i, options.eval_max_tokens) for i in held_set]
                    result.base_acc, result.base_acc_soft = _rates(base_predicted, truth)
                result.unparsed = sum(p < 0 for p in predicted)
                result.predictions = {i.key: p for i, p in zip(held_set, predicted)}
            result.seconds = time.perf_counter() - started
            progress(f"{name}: held-out ACC {_pct(result.acc)} ACC_soft {_pct(result.acc_soft)} "
                     f"(base model {_pct(result.base_acc)} / {_pct(result.base_acc_soft)}, n={len(held_set)})")
            results.append(result)
            del model
    if not results:
        raise TrainingError("no adapter trained: every labelled dialogue was held out (lower --holdout or add labels)")
    summary = {"base": str(folder), "profile": profile.source or profile.name, "options": asdict(options),
               "train_dialogues": len(train), "holdout_dialogues": len(held),
               "adapters": [{**asdict(r), "losses": r.losses} for r in results], "at": time.time()}
    (out / "training.json").write_text(json.dumps(summary, indent=2, default=_json_default, allow_nan=True) + "\n", encoding="utf-8")
    (out / "judge.toml").write_text(judge_toml(folder if base not in (None, "embedded") else None, profile, out, results), encoding="utf-8")
    return results


def _json_default(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else str(value)


def _pct(x: float) -> str:
    return "–" if math.isnan(x) else f"{100 * x:.1f}%"


def judge_toml(base: Path | None, profile: JudgeProfile, out: Path, results: Sequence[AdapterResult]) -> str:
    """A ``[judge]`` section that scores with the trained adapters (local backend; ``lora`` also serves them with vLLM)."""
    lines = ["# written by esc-eval judge train: the trained adapters as a judge", "[judge]", 'backend = "transformers"']
    if base is not None:
        lines.append(f"model = {json.dumps(str(base))}")
    lines.append(f"profile = {json.dumps(profile.source.removeprefix('builtin:') if profile.source else profile.name)}")
    lines.append("max_tokens = 8")
    lora = ", ".join(f"{r.name} = {json.dumps(str(Path(out).resolve() / r.name))}" for r in results)
    lines += [f"lora = {{{lora}}}", "", "[judge.models]"]
    for dim in dict.fromkeys(r.dimension for r in results):
        lines.append(f'{dim} = "{dim}_{{lang}}"')
    return "\n".join(lines) + "\n"


def train_command(labels: Path, base: str, profile: str, out: Path, options: TrainingOptions,
                  dimensions: Sequence[str] | None = None) -> str:
    """``esc-eval judge train``: returns the text to print (progress goes to stdout as it happens)."""
    try:
        judge_profile = load_profile(profile)
    except ProfileError as exc:
        raise TrainingError(f"--profile: {exc}") from None
    items = read_training_labels(labels)
    results = train_adapters(items, base, judge_profile, out, options, dimensions=dimensions,
                             progress=lambda line: print(line, flush=True))
    rows = [f"{'adapter':<20} {'train':>5} {'held':>5} {'loss first→last':>17} {'ACC':>7} {'ACC_soft':>9} {'base ACC':>9}"]
    for r in results:
        rows.append(f"{r.name:<20} {r.train_items:>5} {r.holdout_items:>5} {r.losses[0]:>8.3f}→{r.losses[-1]:<8.3f} "
                    f"{_pct(r.acc):>7} {_pct(r.acc_soft):>9} {_pct(r.base_acc):>9}")
    rows.append(f"adapters: {out}  (config: {Path(out) / 'judge.toml'}; details: {Path(out) / 'training.json'})")
    return "\n".join(rows)


__all__ = ["AdapterResult", "Item", "TrainingError", "TrainingOptions", "judge_toml", "read_training_labels", "split",
           "train_adapters", "train_command"]

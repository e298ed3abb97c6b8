"""Seeker training: one LoRA adapter that makes a chat model speak as the help-seeker (``esc-eval seeker train``).

Each seeker turn of each training dialogue is one example: the request a run sends the
seeker before that turn (protocol system prompt with the card, the persona's directives,
the history with the supporter as ``user``: ``esc_eval.environments.replay``), rendered by the base
model's chat template, and the seeker's line as the only target (``esc_eval.agents.lora_training``).

Dialogues are split by card (``holdout`` of the cards, chosen by a hash of the card id and
``seed``), so the held-out figures are on cards the adapter never saw. There, for every
seeker turn, the adapter and the bare base model each answer the real history (greedy, as
the run's seeker does with ``max_tokens = eval_max_tokens``), and the replies get
``seeker eval``'s figures (``esc_eval.runs.analysis.seeker``: role breaks, parroting, ...) with their
intervals over cards.

Output: ``OUT/seeker/`` (the peft adapter), ``OUT/training.json`` (options, losses, held-out
figures and replies) and ``OUT/seeker.toml`` (a ``[seeker]`` section that serves it).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from esc_eval.agents.lora_training import TrainingError, TrainingOptions, encode_chat, generate, load_base, train_lora
from esc_eval.environments.behaviours import SeekerBehaviour, load_behaviour
from esc_eval.environments.replay import SeekerExample, seeker_examples
from esc_eval.roles.cards import CardError, RoleCard
from esc_eval.roles.loaders import builtin_cards, load_cards
from esc_eval.roles.persona_model import PersonaError
from esc_eval.roles.persona_text import card_facts
from esc_eval.roles.personas import base_role_break
from esc_eval.roles.templates import ProtocolError, SeekerProtocol, load_protocol
from esc_eval.runs.analysis.seeker import aggregate, episode_figures
from esc_eval.runs.training.dialogues import Dialogue, read_dialogues

ADAPTER = "seeker"
"""The adapter's name: the ``[seeker]`` role's requests use the adapter named like the role."""


@dataclass
class SeekerTraining:
    """What ``train_seeker`` did: sizes, losses and the held-out figures (``seeker eval`` rows) before and after."""

    path: str
    train_dialogues: int
    train_turns: int
    holdout_cards: list[str]
    holdout_turns: int
    losses: list[float] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)
    replies: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def split_by_card(dialogues: Sequence[Dialogue], holdout: float, seed: int) -> tuple[list[Dialogue], list[Dialogue]]:
    """(training, held-out) dialogues: the ``holdout`` share of cards with the lowest ``sha256(seed:card id)`` is held out."""
    cards = sorted({d.card.id for d in dialogues}, key=lambda card: hashlib.sha256(f"{seed}:{card}".encode()).hexdigest())
    if holdout <= 0 or len(cards) < 2:
        return list(dialogues), []
    held = set(cards[:min(len(cards) - 1, max(1, round(holdout * len(cards))))])
    return [d for d in dialogues if d.card.id not in held], [d for d in dialogues if d.card.id in held]


def examples(dialogues: Sequence[Dialogue], protocol: SeekerProtocol,
             behaviours: dict[str, SeekerBehaviour]) -> list[tuple[Dialogue, list[SeekerExample]]]:
    """Each dialogue with the seeker requests a run would have sent for it (``esc_eval.environments.replay``)."""
    return [(d, seeker_examples(protocol, behaviours[d.persona], d.card, d.transcript, d.persona)) for d in dialogues]


def _behaviours(dialogues: Sequence[Dialogue]) -> dict[str, SeekerBehaviour]:
    found = {}
    for name in sorted({d.persona for d in dialogues}):
        try:
            found[name] = load_behaviour(name)[1]
        except PersonaError as exc:
            raise TrainingError(f"persona of dialogue {next(d.key for d in dialogues if d.persona == name)}: {exc}") from None
    return found


def train_seeker(dialogues: Sequence[Dialogue], base: str | Path | None, protocol: SeekerProtocol, out: Path,
                 options: TrainingOptions = TrainingOptions(), *, eval_per_card: int = 2,
                 progress: Callable[[str], None] = lambda line: None) -> SeekerTraining:
    """Train the seeker adapter on ``dialogues``; write it, ``training.json`` and ``seeker.toml`` to ``out``.

    ``eval_per_card`` held-out dialogues per held-out card are answered (each seeker turn is a
    generation, twice with ``compare_base``: on a CPU this, not training, can take longest).

    Raises:
        TrainingError: no training turn (every card held out), an unknown persona, peft or torch missing.
    """
    options.check()
    started = time.perf_counter()
    behaviours = _behaviours(dialogues)
    train, held = split_by_card(dialogues, options.holdout, options.seed)
    train_examples = [e for _, found in examples(train, protocol, behaviours) for e in found]
    if not train_examples:
        raise TrainingError("no seeker turn to train on: every card was held out (lower --holdout or add cards)")
    model_base = load_base(base, options.seed, "seeker training")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    encoded = [encode_chat(model_base.tokenizer, e.messages, e.reply, options.max_length) for e in train_examples]
    progress(f"{ADAPTER}: {len(encoded)} seeker turns of {len(train)} dialogues; {len(held)} dialogues of "
             f"{len({d.card.id for d in held})} cards held out")
    model, losses = train_lora(model_base, encoded, options, ADAPTER, progress)
    model.save_pretrained(out / ADAPTER)
    held_examples = examples(_first_per_card(held, eval_per_card), protocol, behaviours)
    result = SeekerTraining(str(out / ADAPTER), len(train), len(encoded), sorted({d.card.id for d in held}),
                            sum(len(found) for _, found in held_examples), losses)
    if held_examples:
        answer = lambda e: generate(model, model_base.tokenizer, e.messages, options.eval_max_tokens, model_base.pad)  # noqa: E731
        result.replies = [_replies("adapter", held_examples, answer)]
        if options.compare_base:
            with model.disable_adapter():
                result.replies.insert(0, _replies("base", held_examples, answer))
        result.figures = held_out_figures(held_examples, result.replies)
    result.seconds = time.perf_counter() - started
    summary = {"base": str(model_base.folder), "protocol": protocol.name, "options": asdict(options), **asdict(result), "at": time.time()}
    (out / "training.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False, default=_json_default) + "\n", encoding="utf-8")
    personas = sorted(behaviours)
    (out / "seeker.toml").write_text(seeker_toml(model_base.folder if base not in (None, "embedded") else None, protocol,
                                                 personas[0] if len(personas) == 1 else "default", out, options.eval_max_tokens),
                                     encoding="utf-8")
    return result


def _first_per_card(dialogues: Sequence[Dialogue], count: int) -> list[Dialogue]:
    taken: dict[str, int] = {}
    kept = []
    for dialogue in dialogues:
        if taken.setdefault(dialogue.card.id, 0) < count:
            taken[dialogue.card.id] += 1
            kept.append(dialogue)
    return kept


def _replies(label: str, held: Sequence[tuple[Dialogue, list[SeekerExample]]], answer: Callable[[SeekerExample], str]) -> dict[str, Any]:
    return {"seeker": label, "dialogues": {d.key: [answer(e) for e in found] for d, found in held}}


def held_out_figures(held: Sequence[tuple[Dialogue, list[SeekerExample]]], replies: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``seeker eval`` rows, one per model (``base``/``adapter``): each held-out dialogue with its seeker lines replaced by the model's."""
    rule = base_role_break()
    figures = []
    for answered in replies:
        for dialogue, found in held:
            transcript = list(dialogue.transcript)
            for example, reply in zip(found, answered["dialogues"][dialogue.key]):
                transcript[example.turn] = ("seeker", reply)
            labels = {"key": dialogue.key, "card": dialogue.card.id, "seeker": answered["seeker"], "persona": dialogue.persona}
            figures.append((labels, episode_figures(transcript, card_facts(dialogue.card), dialogue.card.language, rule)))
    return aggregate(figures, by=("seeker",))


def _json_default(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else str(value)


def seeker_toml(base: Path | None, protocol: SeekerProtocol, persona: str, out: Path, max_tokens: int) -> str:
    """A ``[seeker]`` section served by the trained adapter (``transformers``; ``backend = "vllm"`` serves the same ``lora``)."""
    lines = ["# written by esc-eval seeker train: the trained seeker adapter ('seeker' answers the [seeker] role's requests)",
             "[seeker]", 'backend = "transformers"']
    if base is not None:
        lines.append(f"model = {json.dumps(str(base))}")
    lines += [f"protocol = {json.dumps(protocol.name)}", f"persona = {json.dumps(persona)}", f"max_tokens = {max_tokens}",
              f"lora = {{{ADAPTER} = {json.dumps(str(Path(out).resolve() / ADAPTER))}}}"]
    return "\n".join(lines) + "\n"


def _cards(path: Path | None, language: str | None) -> list[RoleCard]:
    try:
        return load_cards(path, language=language) if path is not None else builtin_cards(language)
    except CardError as exc:
        raise TrainingError(f"--cards: {exc}") from None


def train_command(dialogues: Path, cards: Path | None, base: str, protocol: str, out: Path, options: TrainingOptions,
                  persona: str | None = None, eval_per_card: int = 2) -> str:
    """``esc-eval seeker train``: returns the text to print (progress goes to stdout as it happens)."""
    try:
        seeker_protocol = load_protocol(protocol)
    except ProtocolError as exc:
        raise TrainingError(f"--protocol: {exc}") from None
    if cards is not None and not Path(cards).exists():
        raise TrainingError(f"--cards: {cards}: no such file")
    found = read_dialogues(dialogues, _cards(cards, None), cards)
    if persona is not None:
        found = [Dialogue(d.key, d.card, persona, d.transcript) for d in found]
    if eval_per_card < 1:
        raise TrainingError(f"--eval-per-card must be at least 1, got {eval_per_card}")
    result = train_seeker(found, base, seeker_protocol, out, options, eval_per_card=eval_per_card,
                          progress=lambda line: print(line, flush=True))
    rows = [f"trained on {result.train_turns} seeker turns of {result.train_dialogues} dialogues; loss "
            f"{result.losses[0]:.3f} → {result.losses[-1]:.3f} in {result.seconds:.0f} s"]
    if result.figures:
        rows.append(f"held out: {result.holdout_turns} seeker turns on cards {', '.join(result.holdout_cards)}")
        rows.append(f"{'seeker':<8} {'role_break_rate':>26} {'parroting':>26} {'distinct_2':>10}")
        for row in result.figures:
            rows.append(f"{row['seeker']:<8} {_cell(row, 'role_break_rate'):>26} {_cell(row, 'parroting'):>26} "
                        f"{_cell(row, 'distinct_2', False):>10}")
    rows.append(f"adapter: {result.path}  (config: {Path(out) / 'seeker.toml'}; details: {Path(out) / 'training.json'})")
    return "\n".join(rows)


def _cell(row: dict[str, Any], name: str, interval: bool = True) -> str:
    value, ci = row[name], row["ci"].get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if interval and ci else "")


__all__ = ["ADAPTER", "SeekerTraining", "examples", "held_out_figures", "seeker_toml", "split_by_card", "train_command", "train_seeker"]

"""The LoRA training loop ``judge train`` and ``seeker train`` share (peft, CPU or GPU).

A training example is one chat prompt (rendered by the base model's own chat template,
exactly as the backend sends it at run time) plus the assistant reply that should follow;
only the reply's tokens (and the end-of-turn token) carry a loss. Prompts longer than
``max_length`` lose their beginning. Batches are drawn in a shuffled cycle over the
examples; the adapter is a peft ``LoraConfig`` on the attention projections.

Example::

    base = load_base("embedded", seed=0)
    encoded = [encode_chat(base.tokenizer, messages, reply, 512) for messages, reply in examples]
    model, losses = train_lora(base, encoded, TrainingOptions(steps=50), "seeker")
    model.save_pretrained("adapters/seeker")
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esc_eval.agents.messages import ChatMessage


class TrainingError(ValueError):
    """Bad training input (data file, profile, options, missing peft); names the file and line."""


@dataclass(frozen=True)
class TrainingOptions:
    """How an adapter is trained.

    Attributes:
        steps: optimizer steps per adapter.
        lr: AdamW learning rate.
        rank / alpha / dropout: LoRA rank, scaling and dropout.
        target_modules: the base model's modules that get adapters (Llama-style attention projections).
        batch_size: examples per step (sampled in a shuffled cycle over the training examples).
        max_length: tokens per example; longer prompts lose their beginning.
        holdout: share of dialogues held out for evaluation (at least one when there are two or more).
        seed: split, shuffling and initialisation.
        eval_max_tokens: tokens generated per held-out reply.
        layers: indices of the transformer layers that get adapters (``None``: all). Adapting only
            the last few layers makes a step much cheaper: backpropagation stops below them.
        compare_base: also evaluate the bare base model on the held-out set.
    """

    steps: int = 200
    lr: float = 5e-4
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    batch_size: int = 4
    max_length: int = 2048
    holdout: float = 0.2
    seed: int = 0
    eval_max_tokens: int = 8
    layers: tuple[int, ...] | None = None
    compare_base: bool = True

    def check(self) -> None:
        for name in ("steps", "rank", "alpha", "batch_size", "max_length", "eval_max_tokens"):
            if getattr(self, name) < 1:
                raise TrainingError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.holdout < 1:
            raise TrainingError(f"--holdout must be in [0, 1), got {self.holdout}")
        if self.lr <= 0:
            raise TrainingError(f"--lr must be positive, got {self.lr}")


@dataclass
class Base:
    """A loaded base model: its folder, tokenizer, float32 weights (kept pristine), pad id, and the torch/peft modules."""

    folder: Path
    tokenizer: Any
    model: Any
    pad: int
    torch: Any
    peft: Any


def load_base(base: str | Path | None, seed: int, needed_by: str = "training") -> Base:
    """The base model folder (``None``/``"embedded"``: the embedded SmolLM2) loaded for training.

    Raises ``TrainingError`` when peft is missing or ``base`` is not a model folder.
    """
    try:
        import peft

        from esc_eval.agents.backends.lora_local import resolve_base
        from esc_eval.agents.backends.torch_import import import_torch
    except ImportError:
        raise TrainingError(f"{needed_by} needs peft: pip install esc-eval[train]") from None
    torch = import_torch()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        folder = resolve_base(base)
    except (ValueError, FileNotFoundError) as exc:
        raise TrainingError(f"--base: {exc}") from None
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return Base(folder, tokenizer, model, pad, torch, peft)


def encode_chat(tokenizer: Any, messages: Sequence[ChatMessage], reply: str, max_length: int) -> tuple[list[int], list[int]]:
    """Token ids and loss labels of ``messages`` + the assistant ``reply``: -100 on the prompt, the reply's ids after it.

    The prompt is rendered with ``add_generation_prompt`` (what a backend sends); the target is
    what the template appends for the reply, end-of-turn token included, trailing newline not.
    """
    chat = [{"role": m["role"], "content": m["content"]} for m in messages]
    prompt = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(chat + [{"role": "assistant", "content": reply}], tokenize=False)
    if not full.startswith(prompt):
        raise TrainingError("the base model's chat template does not extend the prompt with the answer; cannot train on it")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    target_ids = tokenizer(full[len(prompt):].rstrip("\n"), add_special_tokens=False)["input_ids"]
    keep = max(1, max_length - len(target_ids))
    prompt_ids = prompt_ids[-keep:]
    return prompt_ids + target_ids, [-100] * len(prompt_ids) + list(target_ids)


def train_lora(base: Base, encoded: Sequence[tuple[list[int], list[int]]], options: TrainingOptions, name: str,
               progress: Callable[[str], None] = lambda line: None) -> tuple[Any, list[float]]:
    """A fresh adapter on a copy of ``base.model`` trained on ``encoded`` for ``options.steps``; (peft model in eval mode, losses)."""
    torch = base.torch
    model = base.peft.get_peft_model(copy.deepcopy(base.model), base.peft.LoraConfig(
        r=options.rank, lora_alpha=options.alpha, lora_dropout=options.dropout,
        target_modules=list(options.target_modules), task_type="CAUSAL_LM",
        layers_to_transform=list(options.layers) if options.layers is not None else None))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=options.lr)
    rng = random.Random(f"{options.seed}:{name}")
    order: list[int] = []
    losses: list[float] = []
    for step in range(options.steps):
        batch: list[tuple[list[int], list[int]]] = []
        while len(batch) < min(options.batch_size, len(encoded)):
            if not order:
                order = list(range(len(encoded)))
                rng.shuffle(order)
            batch.append(encoded[order.pop()])
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.tensor([ids + [base.pad] * (width - len(ids)) for ids, _ in batch])
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch])
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
        if step == 0 or (step + 1) % max(1, options.steps // 5) == 0:
            progress(f"{name}: step {step + 1}/{options.steps} loss {losses[-1]:.4f}")
    model.eval()
    del optimizer
    return model, losses


def generate(model: Any, tokenizer: Any, messages: Sequence[ChatMessage], max_tokens: int, pad: int) -> str:
    """The greedy reply of ``model`` to ``messages`` (chat template, generation prompt), special tokens dropped."""
    import torch

    chat = [{"role": m["role"], "content": m["content"]} for m in messages]
    text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False, pad_token_id=pad)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


__all__ = ["Base", "TrainingError", "TrainingOptions", "encode_chat", "generate", "load_base", "train_lora"]

"""``esc-eval demo``: its seeker is served by the packaged seeker adapter (``esc-eval seeker train``, docs/seeker.md)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from esc_eval.runs.cli.run import demo_config, demo_seeker_adapter

PACKAGED = Path(str(resources.files("esc_eval.runs") / "data" / "seeker_adapter"))


def test_the_demo_seeker_uses_the_packaged_adapter() -> None:
    assert (PACKAGED / "adapter_config.json").is_file(), "the adapter ships in the package data"
    assert sum(f.stat().st_size for f in PACKAGED.iterdir()) < 10 * 2**20, "package data stays small"
    config = demo_config(2, 2)
    assert demo_seeker_adapter() == PACKAGED and config.seeker.lora == {"seeker": str(PACKAGED)}
    assert not config.supporters[0].lora and not config.judge.lora, "only the seeker gets the adapter"
    assert (config.run.rounds, config.cards.limit) == (2, 2)


@pytest.mark.model
@pytest.mark.timeout(300)
async def test_the_demo_seeker_backend_answers_with_the_adapter() -> None:
    from esc_eval.agents.backends import BACKENDS, Shared
    from esc_eval.agents.backends.transformers_local import TransformersRole
    from esc_eval.agents.messages import SamplingParams
    from esc_eval.roles.loaders import builtin_cards
    from esc_eval.roles.templates import load_protocol

    config = demo_config(1)
    backend = BACKENDS.get(config.seeker.backend)(config.seeker, name="seeker", shared=(shared := Shared()))
    assert isinstance(backend, TransformersRole) and backend.default_model == "seeker"
    protocol = load_protocol(config.seeker.protocol)
    messages = [{"role": "system", "content": protocol.seeker_prompt(builtin_cards("en")[0])},
                {"role": "user", "content": protocol.opener("en")}]
    try:
        reply = await backend.complete(messages, SamplingParams(max_tokens=32, temperature=0.0))
        base = await backend.complete(messages, SamplingParams(max_tokens=32, temperature=0.0), model="base")
    finally:
        await shared.aclose()  # closes the model every role of it shares
    assert reply.model == "seeker" and reply.text != base.text, "the demo seeker's requests go through the adapter"

"""A role served by its own LoRA adapter: the adapter named like the role answers requests that name no model."""

from __future__ import annotations

from pathlib import Path

import pytest

from esc_eval.agents.backends import BACKENDS, Shared, role_adapter
from esc_eval.agents.backends.lora_local import LoraLocalBackend
from esc_eval.runs.config_sections import EndpointConfig


def adapter(tmp_path: Path, name: str) -> str:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    return str(folder)


def test_the_adapter_named_like_the_role_is_its_default(tmp_path: Path) -> None:
    endpoint = EndpointConfig(backend="transformers", lora={"seeker": adapter(tmp_path, "s"), "other": adapter(tmp_path, "o")})
    assert role_adapter(endpoint, "seeker") == "seeker"
    assert role_adapter(endpoint, "seeker:esc-role") == "seeker", "one of several [[seekers]] uses its own seeker adapter"
    assert role_adapter(endpoint, "judge") is None, "a judge names its adapters per dimension; no default"
    backend = BACKENDS.get("transformers")(endpoint, name="seeker", shared=Shared())
    assert isinstance(backend, LoraLocalBackend) and backend.default_model == "seeker"
    judge = BACKENDS.get("transformers")(endpoint, name="judge", shared=Shared())
    assert isinstance(judge, LoraLocalBackend) and judge.default_model is None


def test_a_default_adapter_must_be_one_of_the_adapters(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="default adapter 'seeker' is not one of other"):
        LoraLocalBackend(None, adapters={"other": adapter(tmp_path, "o")}, default_model="seeker")

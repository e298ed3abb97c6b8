"""``backend = "auto"``: vLLM when it is importable, else transformers; the choice is logged once per engine."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
from pathlib import Path

import pytest

from esc_eval.agents.backends import BACKENDS, Shared, choose_local_backend, resolve_backend
from esc_eval.agents.backends.base import LOADING_LOG
from esc_eval.runs.config import parse_config

SUPPORTER = {"name": "sup", "base_url": "http://127.0.0.1:9/v1", "model": "m"}


def fake_vllm(monkeypatch: pytest.MonkeyPatch, installed: bool) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: object):  # type: ignore[no-untyped-def]
        if name == "vllm":
            return importlib.machinery.ModuleSpec("vllm", None) if installed else None
        return real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


@pytest.mark.parametrize(("installed", "chosen", "why"), [(True, "vllm", "vllm installed"), (False, "transformers", "vllm not installed")])
def test_auto_picks_vllm_only_when_it_is_importable(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                                     installed: bool, chosen: str, why: str) -> None:
    fake_vllm(monkeypatch, installed)
    assert choose_local_backend("/models/m") == (chosen, why)
    with caplog.at_level(logging.INFO, logger=LOADING_LOG):
        assert resolve_backend("auto", name="seeker", model="/models/m") == chosen
    assert [r.getMessage() for r in caplog.records] == [f"seeker: backend auto -> {chosen} ({why})"]


def test_without_a_model_auto_runs_the_embedded_model_on_transformers(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_vllm(monkeypatch, True)
    assert choose_local_backend(None) == ("transformers", "no model given: the embedded model")


def test_other_backends_pass_through_silently(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=LOADING_LOG):
        assert resolve_backend("openai", name="seeker", model="m") == "openai"
    assert caplog.records == []


@pytest.mark.parametrize(("installed", "cls"), [(True, "VLLMEngineBackend"), (False, "TransformersRole")])
def test_the_auto_factory_builds_the_chosen_backend(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, installed: bool, cls: str) -> None:
    fake_vllm(monkeypatch, installed)
    endpoint = parse_config({"seeker": {"backend": "auto", "model": str(tmp_path)}, "supporters": [SUPPORTER]}).seeker
    backend = BACKENDS.get("auto")(endpoint, name="seeker", shared=Shared())
    assert type(backend).__name__ == cls
    assert backend.stats.endpoint == "seeker"

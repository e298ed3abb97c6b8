"""``esc-eval serve`` planning and the vLLM backend's routing, without vLLM installed (fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esc_eval.agents.backends.vllm_server import ServerPlan, max_lora_rank
from esc_eval.runs.cli import main
from esc_eval.runs.cli.serve import plan_servers
from esc_eval.runs.config import ConfigError, parse_config

ENDPOINT = {"base_url": "http://127.0.0.1:8001/v1", "model": "sup"}


def config(**judge: object):  # type: ignore[no-untyped-def]
    raw = {"seeker": {"base_url": "http://127.0.0.1:8000/v1", "model": "role"},
           "supporters": [{"name": "a", **ENDPOINT}, {"name": "b", **ENDPOINT},
                          {"name": "remote", "base_url": "https://api.example.com/v1", "model": "x"},
                          {"name": "local", "backend": "transformers"}],
           "judge": {"base_url": "http://localhost:8002/v1", "model": "base", **judge}}
    return parse_config(raw, "eval.toml")


def test_one_server_per_local_port_with_the_judges_adapters(tmp_path: Path) -> None:
    adapter = tmp_path / "fluency_en"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 32}))
    plans = plan_servers(config(lora={"fluency_en": str(adapter), "empathic_en": "/missing"}))
    assert [(p.model, p.port, p.roles) for p in plans] == [
        ("role", 8000, ["seeker"]), ("sup", 8001, ["supporters[0] (a)", "supporters[1] (b)"]), ("base", 8002, ["judge"])]
    command = plans[2].command("/venv/bin/python", cpu=True, extra=["--dtype", "bfloat16"])
    assert command[:3] == ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert command[command.index("--lora-modules") + 1:command.index("--lora-modules") + 3] == [
        f"fluency_en={adapter}", "empathic_en=/missing"]
    assert command[command.index("--max-lora-rank") + 1] == "32"
    assert command[-4:] == ["--enforce-eager", "--no-enable-chunked-prefill", "--dtype", "bfloat16"]
    assert "--enable-lora" not in plans[0].command("python")


def test_a_port_serves_one_base_model() -> None:
    with pytest.raises(ConfigError, match="port 8001 already serves 'sup'"):
        plan_servers(config(base_url="http://127.0.0.1:8001/v1"))


def test_lora_rank_defaults_to_16_and_rounds_up_to_what_vllm_accepts(tmp_path: Path) -> None:
    assert max_lora_rank([]) == 16
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 4}))
    assert max_lora_rank([str(tmp_path)]) == 8
    assert ServerPlan("m", 1, ["judge"]).base_url == "http://127.0.0.1:1/v1"


def test_serve_dry_run_prints_the_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "judge.toml"
    path.write_text('[judge]\nbase_url = "http://127.0.0.1:8011/v1"\nmodel = "/m"\nlora = {fluency_en = "/a"}\n')
    assert main(["serve", str(path), "--dry-run", "--python", "/venv/bin/python"]) == 0
    out = capsys.readouterr().out
    assert "# judge -> http://127.0.0.1:8011/v1" in out
    assert "/venv/bin/python -m vllm.entrypoints.openai.api_server --model /m --host 127.0.0.1 --port 8011 --enable-lora" in out


def test_vllm_backend_config_and_routing_without_vllm() -> None:
    from esc_eval.agents.backends.base import RequestRejected
    from esc_eval.agents.backends.vllm_engine import VLLMEngineBackend
    from esc_eval.runs.execution.pool import BackendPool

    c = parse_config({"judge": {"backend": "vllm", "model": "/m", "lora": {"fluency_en": "/a"}}}, judge_only=True)
    backend = BackendPool().get("judge", c.judge)  # type: ignore[arg-type]
    assert type(backend).__name__ == "VLLMEngineBackend" and backend.lora == {"fluency_en": "/a"}  # type: ignore[attr-defined]
    assert backend.lora_request(None) is None and backend.lora_request("/m") is None  # type: ignore[attr-defined]
    with pytest.raises(RequestRejected, match="unknown model 'other'"):
        backend.lora_request("other")  # type: ignore[attr-defined]
    assert VLLMEngineBackend(model="/m").stats.endpoint == "/m"
    with pytest.raises(ConfigError, match="required by backend 'vllm'"):
        parse_config({"judge": {"backend": "vllm"}}, judge_only=True)
    assert c.fingerprint() != parse_config({"judge": {"backend": "vllm", "model": "/m"}}, judge_only=True).fingerprint()


@pytest.mark.parametrize(("native", "dtype"), [(True, []), (False, ["--dtype", "float32"])])
def test_on_a_cpu_without_native_bfloat16_the_server_runs_float32_unless_told(monkeypatch: pytest.MonkeyPatch,
                                                                              native: bool, dtype: list[str]) -> None:
    import esc_eval.agents.backends.vllm_server as vllm_server

    monkeypatch.setattr(vllm_server, "cpu_has_native_bf16", lambda: native)
    plan = ServerPlan("/m", 8000, ["seeker"])
    command = plan.command("python", cpu=True, extra=["--dtype", "bfloat16"])
    tail = [*dtype, "--enforce-eager", "--no-enable-chunked-prefill", "--dtype", "bfloat16"]
    assert command[-len(tail):] == tail
    assert command.count("--dtype") == 1 + len(dtype) // 2  # the user's --dtype comes last, so vLLM takes it
    assert "--dtype" not in plan.command("python", cpu=False)


def test_native_bfloat16_is_read_from_the_cpu_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import builtins

    from esc_eval.agents.backends.vllm_engine import cpu_has_native_bf16

    real_open = builtins.open
    for flags, native in (("fpu avx2 avx512f", False), ("fpu avx512f avx512_bf16", True), ("fpu amx_bf16 amx_tile", True)):
        (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        monkeypatch.setattr(builtins, "open", lambda path, *a, **k: real_open(tmp_path / "cpuinfo" if path == "/proc/cpuinfo" else path, *a, **k))
        assert cpu_has_native_bf16() is native

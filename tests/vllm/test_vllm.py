"""vLLM on CPU: per-dimension LoRA judging through ``esc-eval serve``, and the in-process engine.

Needs vLLM's CPU build in its own venv (made by ``scripts/vllm-env.sh`` on first use, see
conftest.py). The model is the embedded SmolLM2-135M-Instruct and the adapters are random:
these tests check routing and plumbing, not scores.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.reference import DATA as SHARED
from tests.reference import needs_reference
from tests.vllm.conftest import HERE, REPO, vllm_env

pytestmark = [pytest.mark.model, pytest.mark.vllm, pytest.mark.timeout(1800)]

SUPPORTER, SEEKER = "AI assistant：", "ESC-Role："

DIMENSIONS = ("fluency", "diversity", "empathic", "suggestion", "tech", "human", "overall")
ROUTES = {"fluency": "fluency_en", "empathic": "empathic_en"}


def result_file(tmp_path: Path) -> Path:
    result = {
        "0": [SUPPORTER + "Hello, I'm your personal assistant. You can confide in me!",
              SEEKER + "I lost my job last week and I can't sleep.",
              SUPPORTER + "I'm so sorry. Losing a job is a heavy blow. What worries you most?",
              SEEKER + "Paying rent. And telling my parents.",
              SUPPORTER + "That sounds stressful. Would it help to plan what you'll say to them?"],
        "1": [SUPPORTER + "Hello, I'm your personal assistant. You can confide in me!",
              SEEKER + "My best friend stopped talking to me.",
              SUPPORTER + "That must hurt. Do you know why?"],
    }
    path = tmp_path / "result_smollm_en.json"
    path.write_text(json.dumps(result, ensure_ascii=False, indent=4), encoding="utf-8")
    return path


def judge_config(tmp_path: Path, base_url: str, model: str) -> Path:
    models = "\n".join(f'{d} = "{ROUTES.get(d, model)}"' for d in DIMENSIONS)
    config = tmp_path / "judge.toml"
    config.write_text(f'[judge]\nprofile = "{SHARED / "esc_rank_prompts.json"}"\nbase_url = "{base_url}"\nmodel = "{model}"\n'
                      f"max_tokens = 8\n\n[judge.models]\n{models}\n", encoding="utf-8")
    return config


async def chat(base_url: str, model: str, content: str) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 12,
            "temperature": 0.0, "logprobs": True, "top_logprobs": 1}
    async with aiohttp.ClientSession() as session:
        async with session.post(base_url + "/chat/completions", json=body) as response:
            assert response.status == 200, await response.text()
            return await response.json()


def test_serve_lists_the_base_model_and_its_adapters(vllm_server) -> None:  # type: ignore[no-untyped-def]
    import urllib.request

    with urllib.request.urlopen(vllm_server.base_url + "/models") as response:
        listed = {m["id"] for m in json.load(response)["data"]}
    assert listed == {vllm_server.model, "fluency_en", "empathic_en"}
    printed = "".join(vllm_server.output)
    assert "-m vllm.entrypoints.openai.api_server" in printed and "--lora-modules fluency_en=" in printed
    print(f"\nesc-eval serve ready in {vllm_server.startup_seconds:.1f}s")


async def test_adapters_change_the_output(vllm_server) -> None:  # type: ignore[no-untyped-def]
    prompt = "Say something comforting to a friend who failed an exam."
    replies = {name: await chat(vllm_server.base_url, name, prompt) for name in (vllm_server.model, *ROUTES.values())}
    for name, reply in replies.items():
        assert reply["model"] == name
    first = {name: r["choices"][0]["logprobs"]["content"][0] for name, r in replies.items()}
    texts = {name: r["choices"][0]["message"]["content"] for name, r in replies.items()}
    base = vllm_server.model
    for adapter in ROUTES.values():
        assert (texts[adapter], first[adapter]["logprob"]) != (texts[base], first[base]["logprob"]), (adapter, texts)
    assert texts["fluency_en"] != texts["empathic_en"] or first["fluency_en"] != first["empathic_en"]


@needs_reference  # judge_config reads ESC-RANK's prompts
async def test_judge_routes_each_dimension_to_its_adapter(vllm_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from esc_eval.agents.judge.agent import FINAL, Score
    from esc_eval.runs.config import load_config
    from esc_eval.runs.execution.plan import load_judge_profile
    from esc_eval.runs.execution.pool import BackendPool
    from esc_eval.runs.execution.runner import make_scorer

    transcripts = result_file(tmp_path)
    config = load_config(judge_config(tmp_path, vllm_server.base_url, vllm_server.model), judge_only=True)
    profile = load_judge_profile(config, {"en"})
    scores: list[Score] = []
    pool = BackendPool()
    scorer = make_scorer(config, profile, pool.get("judge", config.judge), [scores.append])  # type: ignore[arg-type]
    from esc_eval.runs.formats.judging import read_transcripts

    for key, lines in read_transcripts(transcripts).items():
        scorer.schedule(key, "en", lines)
    await scorer.drain()
    await pool.aclose()
    final = [s for s in scores if s.round == FINAL]
    assert len(final) == 2 * 7 and not [s for s in final if s.failed], [s.error for s in final if s.failed]
    for score in final:  # Score.model is the `model` field of vLLM's reply: the adapter that answered
        assert score.model == ROUTES.get(score.dimension, vllm_server.model), score


@needs_reference  # judge_config reads ESC-RANK's prompts
def test_esc_eval_judge_command_against_the_lora_server(vllm_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    transcripts = result_file(tmp_path)
    config = judge_config(tmp_path, vllm_server.base_url, vllm_server.model)
    out = tmp_path / "score_smollm_en.json"
    done = subprocess.run([sys.executable, "-m", "esc_eval.runs.cli", "judge", str(transcripts), "--config", str(config), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    table = json.loads(out.read_text(encoding="utf-8"))
    assert set(table) == {"0", "1"}
    for labels in table.values():  # a 135M model with random adapters: any label, or -1 when it gave none
        assert set(labels) == set(DIMENSIONS) and all(label in (-1, 0, 1, 2, 3, 4) for label in labels.values())


def test_in_process_engine_with_lora(vllm_python: str, model_dir: Path, adapters: dict[str, str]) -> None:
    start = time.monotonic()
    done = subprocess.run([vllm_python, str(HERE / "engine_check.py"), str(model_dir), *(f"{k}={v}" for k, v in adapters.items())],
                          cwd=REPO, capture_output=True, text=True, env=vllm_env(), timeout=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-4000:]
    result = json.loads(lines[-1][len("RESULT "):])
    by_model = result["by_model"]
    assert set(by_model) == {"base", *adapters}
    for name, replies in by_model.items():
        for reply in replies:
            assert reply["prompt_tokens"] > 20 and 0 < reply["completion_tokens"] <= 24
            assert reply["model"] == (str(model_dir) if name == "base" else name)
    solo = result["solo"]  # sequential greedy requests: each adapter changes the base model's answer
    assert solo["fluency_en"] != solo["base"] and solo["empathic_en"] != solo["base"], solo
    assert solo["fluency_en"] != solo["empathic_en"], solo
    assert solo["fluency_en"] == by_model["fluency_en"][0]["text"]  # an adapter's batched answer is its solo answer
    assert result["seeded"][0] == result["seeded"][1]  # the per-request seed decides the sample
    assert "RequestRejected" in result["rejected"] and "no_such_adapter" in result["rejected"]
    assert result["requests"] == 3 * 4 + 2 + 3
    greedy_tokens = sum(r["completion_tokens"] for rs in by_model.values() for r in rs)
    assert greedy_tokens < result["completion_tokens"] <= greedy_tokens + 5 * 24  # + two seeded samples + three solo
    assert result["closed"]
    print(f"\nin-process engine: started in {result['startup_seconds']:.1f}s, 14 requests in {result['batch_seconds']:.1f}s, "
          f"whole subprocess {time.monotonic() - start:.1f}s")
